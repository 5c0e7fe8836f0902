// The grid of samples: one tile per chain with its canvas (redrawn live), its energy and actions
// (mark as blend end A or B, enlarge, download).
import { drawImage } from './images.js';

export class GridView {
  constructor(root, { onPick, onZoom, onSave }) {
    this.root = root;
    this.handlers = { onPick, onZoom, onSave };
    this.tiles = [];
    this.images = [];
    this.energies = [];
  }

  reset(n, width, height) {
    this.width = width;
    this.height = height;
    this.images = new Array(n).fill(null);
    this.energies = new Array(n).fill(NaN);
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
      button('⤢', 'Enlarge', () => this.handlers.onZoom(i));
      button('↓', 'Download PNG', () => this.handlers.onSave(i));
      cap.append(label, tools);
      tile.append(canvas, cap);
      this.root.append(tile);
      this.tiles.push({ tile, canvas, label });
    }
  }

  update(chain, images, energy, step) {
    const t = this.tiles[chain];
    if (!t) return;
    if (images) {
      this.images[chain] = images;
      drawImage(t.canvas, images, this.width, this.height);
    }
    this.energies[chain] = energy;
    t.label.textContent = `#${chain} · E ${energy.toFixed(4)}`;
    t.tile.dataset.step = step;
  }

  mark(chain, which) {
    for (const t of this.tiles) t.tile.classList.remove(`pick-${which}`);
    this.tiles[chain]?.tile.classList.add(`pick-${which}`);
  }
}
