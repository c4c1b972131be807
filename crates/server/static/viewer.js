// Caravan study viewer. Enhances the server-rendered series list of the viewer page (which works without
// JavaScript) into an interactive viewer over the case-scoped DICOMweb of the node: series metadata (WADO-RS
// metadata), raw frames (WADO-RS frames, decoded to native pixels by the node), the modality LUT, the linear
// VOI window of PS3.3 C.11.2.1.2.1 and MONOCHROME1 inversion applied here, so window/level is instant.
// Served by the node itself (CSP script-src 'self'); no dependencies.
(function () {
  'use strict';
  var root = document.getElementById('viewer');
  if (!root || !window.fetch || !window.DataView) return;
  var base = root.getAttribute('data-base');
  function t(key) { return root.getAttribute('data-t-' + key) || key; }
  var stage = root.querySelector('.stage');
  var canvas = document.getElementById('canvas');
  var g = canvas.getContext('2d');
  var statusEl = document.getElementById('status');
  var measureEl = document.getElementById('measure');
  var slider = document.getElementById('slice');
  var toolSel = document.getElementById('tool');
  var presetSel = document.getElementById('preset');

  var S = {
    series: null, slices: [], index: 0, wc: 40, ww: 400, zoom: 1, panX: 0, panY: 0,
    line: null, drag: null, cache: {}, pending: {}, image: null, generation: 0
  };

  // --- DICOM JSON --------------------------------------------------------------------------------------------
  function values(ds, tag) { var e = ds[tag]; return e && e.Value ? e.Value : []; }
  function first(ds, tag) { var v = values(ds, tag); return v.length ? v[0] : undefined; }
  function number(ds, tag, fallback) {
    var v = first(ds, tag);
    var n = typeof v === 'string' ? parseFloat(v) : v;
    return typeof n === 'number' && isFinite(n) ? n : fallback;
  }
  function numbers(ds, tag) {
    return values(ds, tag).map(function (v) { return typeof v === 'string' ? parseFloat(v) : v; })
      .filter(function (n) { return typeof n === 'number' && isFinite(n); });
  }

  function describe(ds) {
    // A spacing of zero (some CR files say 0\0) is no calibration: fall back to Imager Pixel Spacing, or pixels.
    var valid = function (s) { return s.length >= 2 && s[0] > 0 && s[1] > 0; };
    var spacing = numbers(ds, '00280030');
    if (!valid(spacing)) spacing = numbers(ds, '00181164');
    if (!valid(spacing)) spacing = [];
    var wc = numbers(ds, '00281050'), ww = numbers(ds, '00281051');
    var ipp = numbers(ds, '00200032');
    return {
      sop: first(ds, '00080018'),
      number: number(ds, '00200013', 0),
      frames: Math.max(1, number(ds, '00280008', 1)),
      rows: number(ds, '00280010', 0),
      cols: number(ds, '00280011', 0),
      bits: number(ds, '00280100', 16),
      signed: number(ds, '00280103', 0) === 1,
      samples: number(ds, '00280002', 1),
      photometric: String(first(ds, '00280004') || 'MONOCHROME2').trim(),
      slope: number(ds, '00281053', 1),
      intercept: number(ds, '00281052', 0),
      window: wc.length && ww.length && ww[0] >= 1 ? { c: wc[0], w: ww[0] } : null,
      // PixelSpacing is (row spacing, column spacing): the vertical, then the horizontal distance in mm.
      spacing: spacing.length >= 2 ? { row: spacing[0], col: spacing[1] } : null,
      z: ipp.length === 3 ? ipp[2] : null
    };
  }

  // --- fetching ----------------------------------------------------------------------------------------------
  function getJson(url) {
    return fetch(url, { headers: { Accept: 'application/dicom+json' }, credentials: 'same-origin' })
      .then(function (r) { if (!r.ok) throw new Error(url + ': ' + r.status); return r.json(); });
  }

  // The first part of a multipart/related body (RFC 2387), as bytes.
  function firstPart(buffer, contentType) {
    var m = /boundary="?([^";]+)"?/i.exec(contentType || '');
    var bytes = new Uint8Array(buffer);
    if (!m) return bytes;
    var delim = '--' + m[1];
    var text = '';
    // Headers are ASCII: look for the boundary and the blank line in the first bytes only.
    for (var i = 0; i < Math.min(bytes.length, 4096); i++) text += String.fromCharCode(bytes[i]);
    var start = text.indexOf(delim);
    if (start < 0) throw new Error('no multipart boundary');
    var headersEnd = text.indexOf('\r\n\r\n', start);
    if (headersEnd < 0) throw new Error('no part headers');
    var bodyStart = headersEnd + 4;
    var end = indexOf(bytes, '\r\n' + delim, bodyStart);
    return bytes.subarray(bodyStart, end < 0 ? bytes.length : end);
  }
  function indexOf(bytes, needle, from) {
    var n = needle.length, c0 = needle.charCodeAt(0);
    outer: for (var i = from; i <= bytes.length - n; i++) {
      if (bytes[i] !== c0) continue;
      for (var j = 1; j < n; j++) if (bytes[i + j] !== needle.charCodeAt(j)) continue outer;
      return i;
    }
    return -1;
  }

  // Stored values → modality values (Float32Array).
  function decode(bytes, d) {
    var n = d.rows * d.cols, out = new Float32Array(n);
    var dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    var step = d.bits / 8;
    if (bytes.byteLength < n * step) throw new Error('short frame');
    for (var i = 0; i < n; i++) {
      var v;
      if (d.bits === 8) v = d.signed ? dv.getInt8(i) : dv.getUint8(i);
      else if (d.bits === 16) v = d.signed ? dv.getInt16(2 * i, true) : dv.getUint16(2 * i, true);
      else v = d.signed ? dv.getInt32(4 * i, true) : dv.getUint32(4 * i, true);
      out[i] = v * d.slope + d.intercept;
    }
    return out;
  }

  function load(slice) {
    var key = slice.d.sop + '/' + slice.frame;
    if (S.cache[key]) return Promise.resolve(S.cache[key]);
    if (S.pending[key]) return S.pending[key];
    var url = base + '/series/' + S.series + '/instances/' + slice.d.sop;
    var p;
    if (slice.d.samples !== 1) {
      // Colour: the node renders it; window/level does not apply.
      p = new Promise(function (resolve, reject) {
        var img = new Image();
        img.onload = function () { resolve({ color: img }); };
        img.onerror = function () { reject(new Error('rendered frame')); };
        img.src = url + '/frames/' + slice.frame + '/rendered';
      });
    } else {
      p = fetch(url + '/frames/' + slice.frame, {
        headers: { Accept: 'multipart/related; type="application/octet-stream"' }, credentials: 'same-origin'
      }).then(function (r) {
        if (!r.ok) throw new Error('frame ' + r.status);
        var ct = r.headers.get('Content-Type');
        return r.arrayBuffer().then(function (b) {
          var values = decode(firstPart(b, ct), slice.d);
          var lo = Infinity, hi = -Infinity;
          for (var i = 0; i < values.length; i++) { if (values[i] < lo) lo = values[i]; if (values[i] > hi) hi = values[i]; }
          return { values: values, lo: lo, hi: hi };
        });
      });
    }
    S.pending[key] = p.then(function (f) { S.cache[key] = f; delete S.pending[key]; return f; },
      function (e) { delete S.pending[key]; throw e; });
    return S.pending[key];
  }

  // --- drawing -----------------------------------------------------------------------------------------------
  var off = document.createElement('canvas');

  function paintOffscreen(frame, d) {
    off.width = d.cols; off.height = d.rows;
    var o = off.getContext('2d');
    if (frame.color) { o.drawImage(frame.color, 0, 0, d.cols, d.rows); return; }
    var img = o.createImageData(d.cols, d.rows), px = img.data, v = frame.values;
    var c = S.wc - 0.5, w = Math.max(1, S.ww) - 1, lo = c - w / 2, hi = c + w / 2;
    var invert = d.photometric === 'MONOCHROME1';
    for (var i = 0, j = 0; i < v.length; i++, j += 4) {
      var x = v[i], y;
      if (x <= lo) y = 0; else if (x > hi) y = 255; else y = ((x - c) / Math.max(w, 1) + 0.5) * 255;
      if (invert) y = 255 - y;
      px[j] = px[j + 1] = px[j + 2] = y; px[j + 3] = 255;
    }
    o.putImageData(img, 0, 0);
  }

  function transform(d) {
    var s = Math.min(canvas.width / d.cols, canvas.height / d.rows) * S.zoom;
    var x0 = (canvas.width - d.cols * s) / 2 + S.panX, y0 = (canvas.height - d.rows * s) / 2 + S.panY;
    return { s: s, x0: x0, y0: y0 };
  }

  function draw() {
    var slice = S.slices[S.index];
    g.setTransform(1, 0, 0, 1, 0, 0);
    g.fillStyle = '#000'; g.fillRect(0, 0, canvas.width, canvas.height);
    if (!slice || !S.image) return;
    var d = slice.d, tr = transform(d);
    g.imageSmoothingEnabled = tr.s < 2;
    g.drawImage(off, tr.x0, tr.y0, d.cols * tr.s, d.rows * tr.s);
    if (S.line) {
      var a = S.line.a, b = S.line.b;
      g.strokeStyle = '#ffd400'; g.lineWidth = 2; g.beginPath();
      g.moveTo(tr.x0 + a.x * tr.s, tr.y0 + a.y * tr.s); g.lineTo(tr.x0 + b.x * tr.s, tr.y0 + b.y * tr.s); g.stroke();
      g.fillStyle = '#ffd400'; g.font = '14px system-ui, sans-serif';
      g.fillText(lengthText(), tr.x0 + b.x * tr.s + 6, tr.y0 + b.y * tr.s - 6);
    }
    statusEl.textContent = t('slice') + ' ' + (S.index + 1) + '/' + S.slices.length + ' · ' + t('window') + ' ' +
      Math.round(S.wc) + '/' + Math.round(S.ww) + ' · ' + t('zoom') + ' ' + Math.round(S.zoom * 100) + '%';
    canvas.setAttribute('data-slice', String(S.index + 1));
    canvas.setAttribute('data-slices', String(S.slices.length));
    canvas.setAttribute('data-wc', String(Math.round(S.wc)));
    canvas.setAttribute('data-ww', String(Math.round(S.ww)));
    canvas.setAttribute('data-zoom', String(S.zoom));
    canvas.setAttribute('data-photometric', d.photometric);
    slider.value = String(S.index + 1);
  }

  function lengthMm() {
    if (!S.line) return null;
    var d = S.slices[S.index].d, dx = S.line.b.x - S.line.a.x, dy = S.line.b.y - S.line.a.y;
    if (!d.spacing) return { px: Math.sqrt(dx * dx + dy * dy) };
    var mx = dx * d.spacing.col, my = dy * d.spacing.row;
    return { mm: Math.sqrt(mx * mx + my * my) };
  }
  function lengthText() {
    var l = lengthMm();
    if (!l) return '';
    return l.mm !== undefined ? l.mm.toFixed(1) + ' mm' : l.px.toFixed(1) + ' px (' + t('uncalibrated') + ')';
  }
  function showMeasure() {
    var l = lengthMm();
    measureEl.textContent = l ? t('length') + ': ' + lengthText() : '';
    if (l && l.mm !== undefined) measureEl.setAttribute('data-mm', l.mm.toFixed(2));
    else measureEl.removeAttribute('data-mm');
  }

  function show(index) {
    if (!S.slices.length) return;
    S.index = Math.max(0, Math.min(S.slices.length - 1, index));
    var slice = S.slices[S.index], gen = ++S.generation;
    load(slice).then(function (frame) {
      if (gen !== S.generation) return;
      S.image = frame;
      paintOffscreen(frame, slice.d);
      draw();
      // Prefetch the neighbours so scrolling stays smooth.
      [S.index + 1, S.index - 1, S.index + 2].forEach(function (k) {
        if (S.slices[k]) load(S.slices[k]).catch(function () {});
      });
    }).catch(function () { statusEl.textContent = t('error'); });
  }

  function repaint() {
    var slice = S.slices[S.index];
    if (slice && S.image) { paintOffscreen(S.image, slice.d); draw(); }
  }

  function defaultWindow() {
    var slice = S.slices[S.index];
    if (!slice) return;
    if (slice.d.window) { S.wc = slice.d.window.c; S.ww = slice.d.window.w; return; }
    fullWindow();
  }
  function fullWindow() {
    var f = S.image;
    if (f && isFinite(f.lo)) { S.wc = (f.lo + f.hi) / 2; S.ww = Math.max(1, f.hi - f.lo + 1); }
  }

  // --- series ------------------------------------------------------------------------------------------------
  function openSeries(uid, link) {
    Array.prototype.forEach.call(root.querySelectorAll('.series-item'), function (a) {
      a.classList.toggle('active', a === link);
    });
    statusEl.textContent = t('loading');
    S.series = uid; S.cache = {}; S.pending = {}; S.image = null; S.line = null; showMeasure();
    getJson(base + '/series/' + uid + '/metadata').then(function (list) {
      var ds = list.map(describe).filter(function (d) { return d.sop && d.rows > 0 && d.cols > 0; });
      ds.sort(function (a, b) {
        return a.number - b.number || (a.z !== null && b.z !== null ? a.z - b.z : 0);
      });
      var slices = [];
      ds.forEach(function (d) { for (var f = 1; f <= d.frames; f++) slices.push({ d: d, frame: f }); });
      S.slices = slices;
      S.zoom = 1; S.panX = 0; S.panY = 0;
      slider.max = String(Math.max(1, slices.length));
      stage.hidden = false;
      S.index = 0;
      var head = slices[0];
      if (!head) { statusEl.textContent = t('error'); return; }
      load(head).then(function (frame) {
        S.image = frame;
        presetSel.value = 'default';
        defaultWindow();
        show(Math.floor((slices.length - 1) / 2));
      }).catch(function () { statusEl.textContent = t('error'); });
    }).catch(function () { statusEl.textContent = t('error'); });
  }

  // --- input -------------------------------------------------------------------------------------------------
  function toImage(ev) {
    var r = canvas.getBoundingClientRect(), d = S.slices[S.index].d, tr = transform(d);
    var cx = (ev.clientX - r.left) * canvas.width / r.width, cy = (ev.clientY - r.top) * canvas.height / r.height;
    return { x: (cx - tr.x0) / tr.s, y: (cy - tr.y0) / tr.s, cx: cx, cy: cy };
  }

  canvas.addEventListener('pointerdown', function (ev) {
    if (!S.slices.length) return;
    canvas.setPointerCapture(ev.pointerId);
    var p = toImage(ev);
    S.drag = { x: ev.clientX, y: ev.clientY, tool: ev.button === 2 ? 'wl' : toolSel.value };
    if (S.drag.tool === 'measure') { S.line = { a: p, b: p }; draw(); }
    ev.preventDefault();
  });
  canvas.addEventListener('pointermove', function (ev) {
    if (!S.drag) return;
    var dx = ev.clientX - S.drag.x, dy = ev.clientY - S.drag.y;
    S.drag.x = ev.clientX; S.drag.y = ev.clientY;
    if (S.drag.tool === 'wl') {
      var k = Math.max(1, S.ww / 256);
      S.ww = Math.max(1, S.ww + dx * k); S.wc = S.wc + dy * k;
      presetSel.value = 'default';
      repaint();
    } else if (S.drag.tool === 'pan') {
      var r = canvas.getBoundingClientRect();
      S.panX += dx * canvas.width / r.width; S.panY += dy * canvas.height / r.height; draw();
    } else if (S.drag.tool === 'zoom') {
      S.zoom = Math.min(20, Math.max(0.1, S.zoom * Math.exp(-dy / 150))); draw();
    } else if (S.drag.tool === 'measure') {
      S.line.b = toImage(ev); draw(); showMeasure();
    }
  });
  function endDrag() { S.drag = null; }
  canvas.addEventListener('pointerup', endDrag);
  canvas.addEventListener('pointercancel', endDrag);
  canvas.addEventListener('contextmenu', function (ev) { ev.preventDefault(); });
  canvas.addEventListener('wheel', function (ev) {
    if (!S.slices.length) return;
    ev.preventDefault();
    if (ev.ctrlKey) { S.zoom = Math.min(20, Math.max(0.1, S.zoom * Math.exp(-ev.deltaY / 300))); draw(); return; }
    show(S.index + (ev.deltaY > 0 ? 1 : -1));
  }, { passive: false });
  canvas.addEventListener('keydown', function (ev) {
    var k = ev.key;
    if (k === 'ArrowDown' || k === 'PageDown' || k === 'ArrowRight') show(S.index + 1);
    else if (k === 'ArrowUp' || k === 'PageUp' || k === 'ArrowLeft') show(S.index - 1);
    else if (k === 'Home') show(0);
    else if (k === 'End') show(S.slices.length - 1);
    else if (k === '+' || k === '=') { S.zoom = Math.min(20, S.zoom * 1.25); draw(); }
    else if (k === '-') { S.zoom = Math.max(0.1, S.zoom / 1.25); draw(); }
    else return;
    ev.preventDefault();
  });
  slider.addEventListener('input', function () { show(parseInt(slider.value, 10) - 1); });
  presetSel.addEventListener('change', function () {
    var v = presetSel.value;
    if (v === 'default') defaultWindow();
    else if (v === 'full') fullWindow();
    else { var p = v.split(','); S.wc = parseFloat(p[0]); S.ww = parseFloat(p[1]); }
    repaint();
  });
  document.getElementById('zoom-in').addEventListener('click', function () { S.zoom = Math.min(20, S.zoom * 1.25); draw(); });
  document.getElementById('zoom-out').addEventListener('click', function () { S.zoom = Math.max(0.1, S.zoom / 1.25); draw(); });
  document.getElementById('reset').addEventListener('click', function () {
    S.zoom = 1; S.panX = 0; S.panY = 0; S.line = null; presetSel.value = 'default'; defaultWindow(); showMeasure(); repaint();
  });

  var links = root.querySelectorAll('.series-item');
  Array.prototype.forEach.call(links, function (a) {
    a.addEventListener('click', function (ev) { ev.preventDefault(); openSeries(a.getAttribute('data-series'), a); });
  });
  root.classList.add('enhanced');
  if (links.length) openSeries(links[0].getAttribute('data-series'), links[0]);
})();
