// Caravan's Deep Zoom viewer: pans and zooms a whole-slide image served as a .dzi descriptor and
// {name}_files/{level}/{col}_{row}.jpeg tiles. Written for the node (no library, no CDN; served as
// /ui/slides/viewer.js under `script-src 'self'`). Drag to pan, wheel / + / − to zoom, 0 to fit.
(function () {
  'use strict';
  var root = document.getElementById('slide-viewer');
  if (!root) return;
  var canvas = root.querySelector('canvas');
  var g = canvas.getContext('2d');
  var status = document.getElementById('slide-status');
  var dziUrl = root.getAttribute('data-dzi');
  var tileBase = dziUrl.replace(/\.dzi$/, '_files/');
  var W = 0, H = 0, T = 254, O = 1, FMT = 'jpeg', MAX = 0;
  var view = { x: 0, y: 0, scale: 1 }; // centre in level-0 pixels, CSS pixels per level-0 pixel
  var minScale = 1, maxScale = 4;
  var cache = new Map(); // "level/col_row" -> {img, ok}
  var CACHE_MAX = 600;
  var pending = 0, failed = 0, queued = false;

  function say(text) { if (status) status.textContent = text; }

  function levelSize(l) {
    var f = Math.pow(2, MAX - l);
    return [Math.ceil(W / f), Math.ceil(H / f)];
  }

  function tile(l, c, r) {
    var key = l + '/' + c + '_' + r;
    var t = cache.get(key);
    if (t) {
      cache.delete(key); cache.set(key, t); // most recently used last
      return t;
    }
    t = { img: new Image(), ok: false };
    pending++;
    t.img.onload = function () { t.ok = true; pending--; redraw(); };
    t.img.onerror = function () { pending--; failed++; redraw(); };
    t.img.src = tileBase + key + '.' + FMT;
    cache.set(key, t);
    while (cache.size > CACHE_MAX) {
      var oldest = cache.keys().next().value;
      var o = cache.get(oldest);
      if (o && !o.ok) pending = Math.max(0, pending - 1);
      cache.delete(oldest);
    }
    return t;
  }

  function fit() {
    var w = root.clientWidth, h = root.clientHeight;
    minScale = Math.min(w / W, h / H);
    view.scale = minScale;
    view.x = W / 2; view.y = H / 2;
  }

  function clamp() {
    view.scale = Math.max(minScale / 4, Math.min(maxScale, view.scale));
    view.x = Math.max(0, Math.min(W, view.x));
    view.y = Math.max(0, Math.min(H, view.y));
  }

  // Draws the tiles of one level that lie in the view; requests missing ones when `load`.
  function drawLevel(l, load, w, h) {
    var f = Math.pow(2, MAX - l); // level-0 pixels per level pixel
    var size = levelSize(l);
    var s = view.scale * f; // CSS pixels per level pixel
    var left = (view.x - w / 2 / view.scale) / f, top = (view.y - h / 2 / view.scale) / f;
    var right = left + w / s, bottom = top + h / s;
    var c0 = Math.max(0, Math.floor(left / T)), c1 = Math.min(Math.ceil(size[0] / T) - 1, Math.floor(right / T));
    var r0 = Math.max(0, Math.floor(top / T)), r1 = Math.min(Math.ceil(size[1] / T) - 1, Math.floor(bottom / T));
    var complete = true;
    for (var r = r0; r <= r1; r++) {
      for (var c = c0; c <= c1; c++) {
        var key = l + '/' + c + '_' + r;
        var t = load ? tile(l, c, r) : cache.get(key);
        if (!t || !t.ok) { complete = false; continue; }
        var x = c * T - (c > 0 ? O : 0), y = r * T - (r > 0 ? O : 0);
        g.drawImage(t.img, (x - left) * s, (y - top) * s, t.img.naturalWidth * s, t.img.naturalHeight * s);
      }
    }
    return complete;
  }

  function draw() {
    queued = false;
    var dpr = window.devicePixelRatio || 1;
    var w = root.clientWidth, h = root.clientHeight;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
    }
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.fillStyle = '#222';
    g.fillRect(0, 0, w, h);
    if (!W) return;
    // The level whose pixels are closest to (not coarser than) the screen's.
    var want = MAX - Math.floor(Math.log2(1 / (view.scale * dpr)) + 1e-9);
    var level = Math.max(0, Math.min(MAX, want));
    // Coarser levels first as a backdrop while the wanted level loads.
    for (var l = Math.max(0, level - 4); l < level; l++) drawLevel(l, false, w, h);
    var complete = drawLevel(level, true, w, h);
    root.setAttribute('data-level', String(level));
    root.setAttribute('data-scale', String(view.scale));
    root.setAttribute('data-complete', complete && pending === 0 ? 'true' : 'false');
    say(Math.round(view.scale * 1000) / 10 + ' % · ' + W + '×' + H + (failed ? ' · ' + failed + ' ✗' : ''));
  }

  function redraw() {
    if (!queued) { queued = true; window.requestAnimationFrame(draw); }
  }

  // Zooms by `factor` keeping the level-0 point under (sx, sy) in place.
  function zoom(factor, sx, sy) {
    var w = root.clientWidth, h = root.clientHeight;
    if (sx === undefined) { sx = w / 2; sy = h / 2; }
    var px = view.x + (sx - w / 2) / view.scale, py = view.y + (sy - h / 2) / view.scale;
    view.scale *= factor;
    clamp();
    view.x = px - (sx - w / 2) / view.scale;
    view.y = py - (sy - h / 2) / view.scale;
    clamp();
    redraw();
  }

  var drag = null;
  root.addEventListener('pointerdown', function (e) {
    drag = { x: e.clientX, y: e.clientY };
    root.setPointerCapture(e.pointerId);
    root.style.cursor = 'grabbing';
  });
  root.addEventListener('pointermove', function (e) {
    if (!drag) return;
    view.x -= (e.clientX - drag.x) / view.scale;
    view.y -= (e.clientY - drag.y) / view.scale;
    drag = { x: e.clientX, y: e.clientY };
    clamp();
    redraw();
  });
  function endDrag() { drag = null; root.style.cursor = 'grab'; }
  root.addEventListener('pointerup', endDrag);
  root.addEventListener('pointercancel', endDrag);
  root.addEventListener('wheel', function (e) {
    e.preventDefault();
    var b = root.getBoundingClientRect();
    zoom(e.deltaY < 0 ? 1.25 : 0.8, e.clientX - b.left, e.clientY - b.top);
  }, { passive: false });
  root.addEventListener('dblclick', function (e) {
    var b = root.getBoundingClientRect();
    zoom(2, e.clientX - b.left, e.clientY - b.top);
  });
  root.addEventListener('keydown', function (e) {
    var step = 60 / view.scale;
    if (e.key === '+' || e.key === '=') zoom(1.25);
    else if (e.key === '-') zoom(0.8);
    else if (e.key === '0') { fit(); redraw(); }
    else if (e.key === 'ArrowLeft') { view.x -= step; clamp(); redraw(); }
    else if (e.key === 'ArrowRight') { view.x += step; clamp(); redraw(); }
    else if (e.key === 'ArrowUp') { view.y -= step; clamp(); redraw(); }
    else if (e.key === 'ArrowDown') { view.y += step; clamp(); redraw(); }
    else return;
    e.preventDefault();
  });
  document.querySelectorAll('[data-zoom]').forEach(function (b) {
    b.addEventListener('click', function () {
      var z = b.getAttribute('data-zoom');
      if (z === 'in') zoom(1.5);
      else if (z === 'out') zoom(1 / 1.5);
      else { fit(); redraw(); }
    });
  });
  window.addEventListener('resize', redraw);

  fetch(dziUrl, { credentials: 'same-origin' })
    .then(function (r) {
      if (!r.ok) throw new Error('HTTP ' + r.status);
      return r.text();
    })
    .then(function (text) {
      var doc = new DOMParser().parseFromString(text, 'application/xml');
      var img = doc.getElementsByTagName('Image')[0];
      var size = doc.getElementsByTagName('Size')[0];
      if (!img || !size) throw new Error('bad descriptor');
      W = parseInt(size.getAttribute('Width'), 10);
      H = parseInt(size.getAttribute('Height'), 10);
      T = parseInt(img.getAttribute('TileSize'), 10);
      O = parseInt(img.getAttribute('Overlap'), 10);
      FMT = img.getAttribute('Format') || 'jpeg';
      if (!(W > 0 && H > 0 && T > 0 && O >= 0)) throw new Error('bad descriptor');
      MAX = Math.ceil(Math.log2(Math.max(W, H)));
      root.setAttribute('data-width', String(W));
      root.setAttribute('data-height', String(H));
      fit();
      redraw();
    })
    .catch(function (err) {
      root.setAttribute('data-failed', 'true');
      say((root.getAttribute('data-error') || 'error') + ' (' + err.message + ')');
    });
})();
