// Charts of the operations overview, drawn from the same JSON the REST API returns
// (#overview-data is /api/v1/analytics/overview's answer for the page's filters).
(function () {
  "use strict";
  function draw() {
    var dataNode = document.getElementById("overview-data");
    if (!dataNode || typeof window.echarts === "undefined") { return; }
    var data = JSON.parse(dataNode.textContent);
    var t = JSON.parse(document.getElementById("overview-labels").textContent);
    var x = data.series.map(function (b) { return b.start; });
    var rate = function (r) { return r.rate === null ? null : Math.round(r.rate * 1000) / 10; };
    var yuan = function (fen) { return Math.round(fen) / 100; };
    var base = { tooltip: { trigger: "axis" }, grid: { left: 48, right: 48, top: 32, bottom: 28 },
                 xAxis: { type: "category", data: x }, legend: { top: 0 } };
    function chart(id, option) {
      var node = document.getElementById(id);
      if (!node) { return; }
      var c = window.echarts.init(node);
      c.setOption(Object.assign({}, base, option));
      window.addEventListener("resize", function () { c.resize(); });
      node.dataset.ready = "1";
    }
    chart("chart-pool", {
      yAxis: { type: "value", minInterval: 1 },
      series: [{ name: t.pool, type: "line", areaStyle: {}, data: data.series.map(function (b) { return b.contacts_held; }) }]
    });
    chart("chart-adds", {
      yAxis: [{ type: "value", minInterval: 1 }, { type: "value", axisLabel: { formatter: "{value}%" } }],
      series: [
        { name: t.adds, type: "bar", data: data.series.map(function (b) { return b.gross_adds; }) },
        { name: t.deletions, type: "bar", data: data.series.map(function (b) { return b.deletions; }) },
        { name: t.deletion_rate, type: "line", yAxisIndex: 1, data: data.series.map(function (b) { return rate(b.deletion_rate); }) }
      ]
    });
    chart("chart-rates", {
      yAxis: { type: "value", axisLabel: { formatter: "{value}%" } },
      series: [
        { name: t.first_order_rate, type: "line", connectNulls: false, data: data.series.map(function (b) { return rate(b.first_order_rate); }) },
        { name: t.repurchase_rate, type: "line", connectNulls: false, data: data.series.map(function (b) { return rate(b.repurchase_rate); }) }
      ]
    });
    chart("chart-gmv", {
      yAxis: { type: "value", axisLabel: { formatter: "¥{value}" } },
      series: [
        { name: t.gmv, type: "bar", data: data.series.map(function (b) { return yuan(b.gmv_fen); }) },
        { name: t.refunds, type: "bar", data: data.series.map(function (b) { return yuan(b.refunds_fen); }) }
      ]
    });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", draw); } else { draw(); }
  // Choosing a preset clears the dates so the preset wins; editing a date switches to custom.
  document.addEventListener("change", function (e) {
    var form = document.getElementById("overview-filters");
    if (!form || !form.contains(e.target)) { return; }
    if (e.target.name === "from" || e.target.name === "to") { form.elements.preset.value = "custom"; }
  });
})();
