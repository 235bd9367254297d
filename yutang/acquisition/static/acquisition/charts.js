/* Charts of the acquisition console pages, drawn with the vendored ECharts from JSON that
   the same service functions give the REST API. */
(function () {
  "use strict";
  function data(id) {
    var node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }
  function draw() {
    if (typeof echarts === "undefined") { return; }
    var spark = data("sparkline-data");
    if (spark) {
      document.querySelectorAll(".yt-sparkline").forEach(function (el) {
        var series = spark[el.dataset.series] || [];
        echarts.init(el).setOption({
          animation: false, grid: { left: 0, right: 0, top: 2, bottom: 2 },
          xAxis: { type: "category", show: false, data: series.map(function (_, i) { return i; }) },
          yAxis: { type: "value", show: false, min: 0 },
          series: [{ type: "line", data: series, symbol: "none", lineStyle: { width: 1.5 }, areaStyle: { opacity: 0.15 } }]
        });
      });
    }
    var report = data("report-data");
    if (!report) { return; }
    var trend = document.getElementById("chart-trend");
    var series = [];
    Object.keys(report.adds_by_day).forEach(function (code) {
      series.push({ name: code + " +", type: "line", data: report.adds_by_day[code] });
      series.push({ name: code + " −", type: "bar", data: report.deletions_by_day[code].map(function (n) { return -n; }) });
    });
    echarts.init(trend).setOption({
      tooltip: { trigger: "axis" }, legend: { type: "scroll" },
      xAxis: { type: "category", data: report.days }, yAxis: { type: "value" }, series: series
    });
    var total = { reached: 0, added: 0, kept: 0, first3: 0, first30: 0 };
    report.rows.forEach(function (r) {
      total.reached += r.reached; total.added += r.added; total.kept += r.kept_30d;
      total.first3 += r.first_order_3d; total.first30 += r.first_order_30d;
    });
    var labels = JSON.parse(document.getElementById("chart-funnel").dataset.labels || "null") ||
      ["reached", "added", "kept 30d", "first order ≤30d", "first order ≤3d"];
    echarts.init(document.getElementById("chart-funnel")).setOption({
      tooltip: { trigger: "item" },
      series: [{ type: "funnel", sort: "descending", label: { position: "inside" }, data: [
        { name: labels[0], value: total.reached }, { name: labels[1], value: total.added },
        { name: labels[2], value: total.kept }, { name: labels[3], value: total.first30 },
        { name: labels[4], value: total.first3 }] }]
    });
    var kept = report.rows.filter(function (r) { return r.cost_per_kept_fen !== null; });
    echarts.init(document.getElementById("chart-kept-cost")).setOption({
      tooltip: { trigger: "axis" }, grid: { left: 60 },
      xAxis: { type: "value" }, yAxis: { type: "category", data: kept.map(function (r) { return r.channel_code; }) },
      series: [{ type: "bar", data: kept.map(function (r) { return r.cost_per_kept_fen / 100; }) }]
    });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", draw); } else { draw(); }
})();
