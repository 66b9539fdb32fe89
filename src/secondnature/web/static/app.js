// Progressive: every page works without this. It adds keys (/ search, j/k rows, Enter open, g+letter a section)
// and asks before a change that makes a new revision.
(function () {
  "use strict";
  var rows = function () { return Array.prototype.slice.call(document.querySelectorAll("tr[data-row]")); };
  var at = -1, pendingG = false;
  function move(step) {
    var all = rows();
    if (!all.length) return;
    if (at >= 0 && all[at]) all[at].classList.remove("current");
    at = Math.max(0, Math.min(all.length - 1, at + step));
    all[at].classList.add("current");
    var link = all[at].querySelector("a");
    (link || all[at]).focus();
    all[at].scrollIntoView({ block: "nearest" });
  }
  document.addEventListener("keydown", function (e) {
    var t = e.target, typing = t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT");
    if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
    if (pendingG) {
      pendingG = false;
      var link = document.querySelector('header a[data-key="' + e.key + '"]');
      if (link) { e.preventDefault(); link.click(); }
      return;
    }
    if (e.key === "/") { var s = document.querySelector("[data-search]"); if (s) { e.preventDefault(); s.focus(); s.select(); } }
    else if (e.key === "j") { e.preventDefault(); move(1); }
    else if (e.key === "k") { e.preventDefault(); move(-1); }
    else if (e.key === "g") { pendingG = true; }
  });
  // "follow live": reload the page every few seconds while the box is ticked (remembered for this tab)
  var live = document.querySelector("[data-live]");
  if (live) {
    live.checked = sessionStorage.getItem("sn-live") === "1";
    live.addEventListener("change", function () { sessionStorage.setItem("sn-live", live.checked ? "1" : "0"); });
    setInterval(function () { if (live.checked && !document.hidden) window.location.reload(); },
                1000 * Number(live.getAttribute("data-live")));
  }
  document.addEventListener("submit", function (e) {
    var q = e.target.getAttribute("data-confirm");
    if (q && !window.confirm(q)) e.preventDefault();
  });
})();
