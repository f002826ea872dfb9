// Progressive enhancement only: the page works without this file.
// Counts down the wait before a new SMS code may be requested, then enables the button again.
(function () {
  var button = document.getElementById("send-code");
  var hint = document.getElementById("resend-wait");
  var line = document.getElementById("resend-hint");
  if (!button || !hint) { return; }
  var left = parseInt(button.getAttribute("data-wait") || "0", 10);
  if (!(left > 0)) { return; }
  button.disabled = true;
  var tick = function () {
    left -= 1;
    if (left <= 0) {
      button.disabled = false;
      (line || hint).parentNode.removeChild(line || hint);
      return;
    }
    hint.textContent = String(left);
    window.setTimeout(tick, 1000);
  };
  window.setTimeout(tick, 1000);
}());
