// The grid of samples: one tile per chain with its canvas (redrawn live), its energy and actions
// (mark as blend end A or B, enlarge, download), and once a classifier has looked at it, its family
// mix (marked when it is a new-type candidate).
import { drawImage } from './images.js';

// An energy as a label shows it: five significant digits, in powers of ten from 1e5 on and below
// 1e-3 (a noise-conditional model's energies are near 1e6; a contrastive-divergence one's near 0).
export function formatEnergy(e) {
  if (!Number.isFinite(e)) return String(e);
  const a = Math.abs(e);
  return a >= 1e5 || (a > 0 && a < 1e-3) ? e.toExponential(4) : String(Number(e.toPrecision(5)));
}

export class GridView {
  constructor(root, { onPick, onZoom, onSave }) {
    this.root = root;
    this.handlers = { onPick, onZoom, onSave };
    this.tiles = [];
    this.images = [];
    this.energies = [];
    this.labels = [];
  }

  reset(n, width, height) {
    this.width = width;
    this.height = height;
    this.images = new Array(n).fill(null);
    this.energies = new Array(n).fill(NaN);
    this.labels = new Array(n).fill(null);
    this.root.replaceChildren();
    this.tiles = [];
    for (let i = 0; i < n; ++i) {
      const tile = document.createElement('figure');
      tile.className = 'tile';
      const canvas = document.createElement('canvas');
      canvas.width = width;
      canvas.height = height;
      canvas.title = 'Enlarge';
      canvas.addEventListener('click', () => this.handlers.onZoom(i));
      const cap = document.createElement('figcaption');
      const label = document.createElement('span');
      label.className = 'energy';
      label.textContent = `#${i}`;
      const tools = document.createElement('span');
      tools.className = 'tools';
      const button = (text, title, fn) => {
        const b = document.createElement('button');
        b.type = 'button';
        b.className = 'mini';
        b.textContent = text;
        b.title = title;
        b.addEventListener('click', fn);
        tools.append(b);
        return b;
      };
      button('A', 'Use as blend end A', () => this.handlers.onPick(i, 'a'));
      button('B', 'Use as blend end B', () => this.handlers.onPick(i, 'b'));
      button('V', 'Use for variations and completion', () => this.handlers.onPick(i, 'v'));
      button('⤢', 'Enlarge', () => this.handlers.onZoom(i));
      button('↓', 'Download PNG', () => this.handlers.onSave(i));
      const mix = document.createElement('div');
      mix.className = 'mix';
      cap.append(label, tools, mix);
      tile.append(canvas, cap);
      this.root.append(tile);
      this.tiles.push({ tile, canvas, label, mix });
    }
  }

  // images: the chain's picture from step imageStep, or null (the picture stays).
  update(chain, images, energy, step, imageStep = step) {
    const t = this.tiles[chain];
    if (!t) return;
    if (images) {
      this.images[chain] = images;
      drawImage(t.canvas, images, this.width, this.height);
      t.tile.dataset.imageStep = imageStep;  // the step the picture is from (step: the latest)
    }
    this.energies[chain] = energy;
    // No energy yet at the start of a noise-level walk (NaN): the first step computes it.
    t.label.textContent = Number.isNaN(energy) ? `#${chain}` : `#${chain} · E ${formatEnergy(energy)}`;
    t.tile.dataset.step = step;
  }

  // result: one entry of the classifier's answer; candidate: hybrid, sharp (see app.js).
  label(chain, result, candidate) {
    const t = this.tiles[chain];
    if (!t) return;
    this.labels[chain] = { ...result, candidate };
    t.mix.textContent = candidate ? `${result.mix} · new type?` : result.mix;
    t.mix.title = `most likely ${result.top} (${Math.round(100 * result.top_prob)}%); sharpness ${result.sharpness.toFixed(2)}`;
    t.tile.classList.toggle('hybrid', result.hybrid);
    t.tile.classList.toggle('candidate', candidate);
  }

  clearLabels() {
    this.labels.fill(null);
    for (const t of this.tiles) {
      t.mix.textContent = '';
      t.tile.classList.remove('hybrid', 'candidate');
    }
  }

  mark(chain, which) {
    for (const t of this.tiles) t.tile.classList.remove(`pick-${which}`);
    this.tiles[chain]?.tile.classList.add(`pick-${which}`);
  }
}
