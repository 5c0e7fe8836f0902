// The per-step chart: the mean over the grid at each step of one number per chain (its energy, or
// under the noise-level forms how far its drawing moved), with the min..max band.

export class EnergyChart {
  constructor(canvas) {
    this.canvas = canvas;
    this.reset(0);
    // The canvas's size as the observer reports it: reading clientWidth in a live frame, after the
    // grid's updates, made Chromium lay the page out there and then.
    this.size = null;
    new ResizeObserver(([entry]) => {
      this.size = { width: entry.contentRect.width, height: entry.contentRect.height };
      this.colors = null;
      this.draw();
    }).observe(canvas);
  }

  reset(total) {
    this.colors = null;  // read again from the style sheet (a theme may have changed)
    this.total = total;
    this.mean = [];
    this.min = [];
    this.max = [];
    this.draw();
  }

  // A step without energies (NaN: the start of a noise-level walk) leaves no point.
  push(step, mean, min, max) {
    if (!Number.isFinite(mean)) return;
    this.mean[step] = mean;
    this.min[step] = min;
    this.max[step] = max;
  }

  draw() {
    const c = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const { width: cw, height: ch } = this.size || { width: c.clientWidth, height: c.clientHeight };
    const w = Math.max(1, Math.round(cw * dpr)), h = Math.max(1, Math.round(ch * dpr));
    if (c.width !== w) c.width = w;
    if (c.height !== h) c.height = h;
    const ctx = c.getContext('2d');
    // The colours once per run: getComputedStyle in every live frame made Chromium recompute the
    // page's style there and then, after the grid's updates.
    if (!this.colors) {
      const css = getComputedStyle(c);
      this.colors = { ink: css.getPropertyValue('--ink').trim() || '#222',
                      faint: css.getPropertyValue('--faint').trim() || '#999',
                      accent: css.getPropertyValue('--accent').trim() || '#2563eb' };
    }
    const { ink, faint, accent } = this.colors;
    ctx.clearRect(0, 0, w, h);
    ctx.font = `${11 * dpr}px system-ui, sans-serif`;
    const left = 58 * dpr, right = 10 * dpr, top = 10 * dpr, bottom = 22 * dpr;
    const pw = w - left - right, ph = h - top - bottom;
    const steps = this.mean.length;
    if (steps === 0) {
      ctx.fillStyle = faint;
      ctx.fillText('the chart appears here while sampling', left, top + ph / 2);
      return;
    }
    let lo = Infinity, hi = -Infinity;
    for (let s = 0; s < steps; ++s) {
      if (this.mean[s] === undefined) continue;
      lo = Math.min(lo, this.min[s]);
      hi = Math.max(hi, this.max[s]);
    }
    if (!(hi > lo)) { hi = lo + 1e-3 * (1 + Math.abs(lo)); }
    const dataLo = lo, dataHi = hi, span = hi - lo;
    lo -= 0.06 * span; hi += 0.06 * span;
    const xMax = Math.max(this.total, steps - 1, 1);
    const X = (s) => left + (s / xMax) * pw;
    const Y = (e) => top + (1 - (e - lo) / (hi - lo)) * ph;

    // Axes and labels.
    ctx.strokeStyle = faint;
    ctx.lineWidth = dpr;
    ctx.beginPath();
    ctx.moveTo(left, top); ctx.lineTo(left, top + ph); ctx.lineTo(left + pw, top + ph);
    ctx.stroke();
    ctx.fillStyle = ink;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (const e of [dataHi, (dataLo + dataHi) / 2, dataLo])
      ctx.fillText(e.toPrecision(3), left - 6 * dpr, Y(e));
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    ctx.fillText('0', X(0), top + ph + 5 * dpr);
    ctx.fillText(`step ${xMax}`, X(xMax) - 20 * dpr, top + ph + 5 * dpr);

    // min..max band, then the mean.
    ctx.fillStyle = accent + '33';
    ctx.beginPath();
    let started = false;
    for (let s = 0; s < steps; ++s) {
      if (this.max[s] === undefined) continue;
      if (!started) { ctx.moveTo(X(s), Y(this.max[s])); started = true; } else ctx.lineTo(X(s), Y(this.max[s]));
    }
    for (let s = steps - 1; s >= 0; --s) if (this.min[s] !== undefined) ctx.lineTo(X(s), Y(this.min[s]));
    ctx.closePath();
    ctx.fill();
    ctx.strokeStyle = accent;
    ctx.lineWidth = 2 * dpr;
    ctx.beginPath();
    started = false;
    for (let s = 0; s < steps; ++s) {
      if (this.mean[s] === undefined) continue;
      if (!started) { ctx.moveTo(X(s), Y(this.mean[s])); started = true; } else ctx.lineTo(X(s), Y(this.mean[s]));
    }
    ctx.stroke();
  }
}
