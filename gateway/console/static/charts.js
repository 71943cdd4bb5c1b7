// Draws the dashboard's charts from the JSON the page carries (#chart-data), with the
// vendored Chart.js: no network access, no inline script (the page's CSP forbids it).
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("chart-data").textContent);
  const palette = ["#0b4f8a", "#a40e26", "#116329", "#b35900", "#6f42c1", "#1b7c83", "#57606a"];
  for (const [name, chart] of Object.entries(data)) {
    const canvas = document.getElementById("chart-" + name);
    if (!canvas) continue;
    const series = Object.entries(chart.series);
    const empty = chart.labels.length === 0;
    new window.Chart(canvas, {
      type: "bar",
      data: {
        labels: empty ? ["no records yet"] : chart.labels,
        datasets: series.map(([label, values], i) => ({
          label: label,
          data: empty ? [0] : values,
          backgroundColor: palette[i % palette.length],
        })),
      },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        indexAxis: chart.labels.length > 6 ? "y" : "x",
        plugins: { legend: { display: series.length > 1 } },
        scales: { x: { stacked: true, ticks: { precision: 0 } }, y: { stacked: true, ticks: { precision: 0 } } },
      },
    });
    canvas.dataset.drawn = "true";
  }
})();
