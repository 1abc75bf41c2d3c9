// Draws the kernel's logos (kernel/assets): a masked-token grid, as in RetroMAE's
// masking, with no image library. Run: node scripts/make-logos.js
"use strict";
const fs = require("fs");
const path = require("path");
const zlib = require("zlib");

const CELLS = [
  [1, 0, 1, 1],
  [1, 1, 0, 1],
  [0, 1, 1, 0],
  [1, 0, 1, 1],
]; // 1 = visible token, 0 = masked
const BG = [37, 99, 235];
const ON = [255, 255, 255];
const OFF = [249, 115, 22];

function crc32(buf) {
  let c;
  const table = [];
  for (let n = 0; n < 256; n++) {
    c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  let crc = 0xffffffff;
  for (const b of buf) crc = table[(crc ^ b) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, "ascii"), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}

function png(size) {
  const rows = [];
  const pad = Math.round(size / 8);
  const cell = (size - 2 * pad) / 4;
  const gap = Math.max(1, Math.round(cell / 6));
  for (let y = 0; y < size; y++) {
    const row = [0];
    for (let x = 0; x < size; x++) {
      const r = size / 6;
      const cx = Math.min(Math.max(x, r), size - 1 - r);
      const cy = Math.min(Math.max(y, r), size - 1 - r);
      const inside = (x - cx) ** 2 + (y - cy) ** 2 <= r * r;
      let rgb = BG;
      let a = inside ? 255 : 0;
      const gx = Math.floor((x - pad) / cell);
      const gy = Math.floor((y - pad) / cell);
      if (gx >= 0 && gx < 4 && gy >= 0 && gy < 4 && (x - pad) % cell >= gap / 2 && (x - pad) % cell < cell - gap / 2 && (y - pad) % cell >= gap / 2 && (y - pad) % cell < cell - gap / 2) rgb = CELLS[gy][gx] ? ON : OFF;
      row.push(...rgb, a);
    }
    rows.push(Buffer.from(row));
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0);
  ihdr.writeUInt32BE(size, 4);
  ihdr[8] = 8;
  ihdr[9] = 6;
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk("IHDR", ihdr), chunk("IDAT", zlib.deflateSync(Buffer.concat(rows), { level: 9 })), chunk("IEND", Buffer.alloc(0))]);
}

function svg() {
  const rects = [];
  CELLS.forEach((row, y) =>
    row.forEach((v, x) => rects.push(`<rect x="${8 + x * 12 + 1}" y="${8 + y * 12 + 1}" width="10" height="10" rx="1.5" fill="${v ? "#ffffff" : "#f97316"}"/>`)),
  );
  return `<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64"><rect width="64" height="64" rx="10" fill="#2563eb"/>${rects.join("")}</svg>\n`;
}

const dir = path.join(__dirname, "..", "kernel", "assets");
fs.mkdirSync(dir, { recursive: true });
fs.writeFileSync(path.join(dir, "logo-32x32.png"), png(32));
fs.writeFileSync(path.join(dir, "logo-64x64.png"), png(64));
fs.writeFileSync(path.join(dir, "logo-svg.svg"), svg());
