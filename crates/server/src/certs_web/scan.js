// Camera scan for the certificate verifier, with the browser's own BarcodeDetector: no library, and the image
// never leaves the browser (only the decoded text is submitted, as if it had been pasted). Without
// BarcodeDetector or a camera, the paste and photo-upload fields keep working and a note says why.
(() => {
  'use strict';
  const button = document.getElementById('scan');
  const video = document.getElementById('scan-video');
  const text = document.getElementById('text');
  const form = document.getElementById('verify-form');
  const note = document.getElementById('scan-note');
  if (!button || !video || !text || !form || !note) return;
  const explain = (message) => { note.textContent = message; note.hidden = false; };
  const supported = 'BarcodeDetector' in window && navigator.mediaDevices && navigator.mediaDevices.getUserMedia;
  if (!supported) { explain(note.dataset.unsupported); return; }
  button.hidden = false;
  let stream = null;
  let timer = null;
  const stop = () => {
    if (timer) clearTimeout(timer);
    timer = null;
    if (stream) stream.getTracks().forEach((t) => t.stop());
    stream = null;
    video.hidden = true;
    button.textContent = button.dataset.start;
  };
  button.addEventListener('click', async () => {
    if (stream) { stop(); return; }
    try {
      const formats = await window.BarcodeDetector.getSupportedFormats();
      if (!formats.includes('qr_code')) { explain(note.dataset.unsupported); button.hidden = true; return; }
      const detector = new window.BarcodeDetector({ formats: ['qr_code'] });
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment' }, audio: false });
      video.srcObject = stream;
      video.hidden = false;
      button.textContent = button.dataset.stop;
      await video.play();
      const look = async () => {
        if (!stream) return;
        try {
          const codes = await detector.detect(video);
          const found = codes.find((c) => c.rawValue);
          if (found) {
            text.value = found.rawValue;
            stop();
            form.requestSubmit();
            return;
          }
        } catch (_) { /* the first frames may not be ready yet */ }
        timer = setTimeout(look, 250);
      };
      look();
    } catch (_) {
      stop();
      explain(note.dataset.denied);
    }
  });
})();
