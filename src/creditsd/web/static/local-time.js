// Moments on the pages are written in UTC: <time datetime="2026-12-01T04:41:00Z"
// title="1 Dec 2026, 04:41 UTC">. This shows each in the browser's own time zone and
// language, keeping UTC in the title (shown on hover); a <time data-date> shows its day
// alone. A <time data-zone> is written in the zone it names (a wallet's limits count their
// windows in it) and stays as it is. Without JavaScript the UTC text stays.
(function () {
  "use strict";
  var moment = { day: "numeric", month: "short", year: "numeric", hour: "2-digit",
    minute: "2-digit", timeZoneName: "short" };
  var day = { day: "numeric", month: "short", year: "numeric" };
  var times = document.querySelectorAll("time[datetime]:not([data-zone])");
  for (var i = 0; i < times.length; i++) {
    var shown = new Date(times[i].getAttribute("datetime"));
    if (!isNaN(shown.getTime())) {
      times[i].textContent = times[i].hasAttribute("data-date")
        ? shown.toLocaleDateString(undefined, day)
        : shown.toLocaleString(undefined, moment);
    }
  }
})();
