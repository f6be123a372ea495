"""DIR/report.html: one file with everything inside (plots as base64 PNGs, a table sortable by plain inline JS),
so it can be mailed or attached to an issue and still open offline."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import numpy as np

from mnas.report.summary import ranking
from mnas.store.query import TrialTable

COLUMNS = [("rank", "rank", "num"), ("id", "trial", "num"), ("status", "status", "text"),
           ("accuracy", "accuracy", "num"), ("latency_ms", "latency (ms)", "num"), ("reward", "reward", "num"),
           ("params", "params (M)", "num"), ("macs", "MACs (M)", "num"), ("arch", "architecture", "text")]

_JS = """
(function () {
  var table = document.getElementById('trials'), body = table.tBodies[0];
  function key(row, col, kind) {
    var v = row.cells[col].getAttribute('data-v');
    if (kind === 'num') { return v === '' || v === null ? NaN : parseFloat(v); }
    return (v === null ? row.cells[col].textContent : v).toLowerCase();
  }
  function sortBy(col, desc) {
    var th = table.tHead.rows[0].cells[col], kind = th.getAttribute('data-kind');
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a, col, kind), y = key(b, col, kind);
      var xm = (kind === 'num' && isNaN(x)), ym = (kind === 'num' && isNaN(y));
      if (xm || ym) { return xm === ym ? 0 : (xm ? 1 : -1); }  // blanks always last
      var c = x < y ? -1 : (x > y ? 1 : 0);
      return desc ? -c : c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', desc ? 'descending' : 'ascending');
    table.setAttribute('data-sorted', th.getAttribute('data-col') + (desc ? ':desc' : ':asc'));
  }
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
    th.addEventListener('click', function () { sortBy(i, th.getAttribute('aria-sort') === 'ascending'); });
  });
  // report.html#sort=latency_ms or #sort=reward:desc opens the page sorted
  var m = /sort=([a-z_]+)(?::(asc|desc))?/.exec(location.hash);
  if (m) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
      if (th.getAttribute('data-col') === m[1]) { sortBy(i, m[2] === 'desc'); }
    });
  }
  document.getElementById('rowcount').textContent = String(body.rows.length);
  document.body.setAttribute('data-ready', '1');
})();
"""

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em}
.plots{display:flex;flex-wrap:wrap;gap:12px}.plots figure{margin:0}.plots img{max-width:600px;width:100%;
border:1px solid #ddd}
table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}
td.arch,td.c-arch{text-align:left;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:11px;word-break:break-all;
max-width:640px}
#trials th{cursor:pointer;background:#f2f2f2;position:sticky;top:0}#trials th[aria-sort=ascending]:after{content:" \\25B2"}
#trials th[aria-sort=descending]:after{content:" \\25BC"}tr.failed td{color:#a00}tr.front td{background:#fff6e0}
.kv td:first-child{text-align:left;font-weight:600}.note{color:#555;font-size:13px}
"""


def _fmt(value: Any, col: str) -> tuple[str, str]:
    """(sort key, text shown) for one cell."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "", ""
    if col in ("params", "macs"):
        return str(value), f"{value / 1e6:.2f}"
    if col == "accuracy":
        return repr(value), f"{value:.4f}"
    if col in ("latency_ms", "reward"):
        return repr(value), f"{value:.3f}" if col == "latency_ms" else f"{value:.4f}"
    return str(value), str(value)


def _img(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def trial_rows(table: TrialTable, limit: int) -> list[dict[str, Any]]:
    """Completed trials by rank, then failed and running ones, at most ``limit``."""
    order = ranking(table)
    rank = {int(i): r + 1 for r, i in enumerate(order.tolist())}
    rest = np.setdiff1d(np.arange(len(table)), order, assume_unique=True)
    chosen = np.concatenate([order, rest])[:limit]
    return [{"rank": rank.get(int(i)), **table.row(int(i))} for i in chosen.tolist()]


def render(summary: dict[str, Any], table: TrialTable, plots: dict[str, Path], limit: int = 1000) -> str:
    e = html.escape
    rows = trial_rows(table, limit)
    front_ids = {r["id"] for r in summary["pareto"]}
    head = "".join(f'<th data-col="{c}" data-kind="{k}">{e(label)}</th>' for c, label, k in COLUMNS)
    body = []
    for r in rows:
        cls = "failed" if r["status"] == "failed" else ("front" if r["id"] in front_ids else "")
        cells = []
        for c, _, _ in COLUMNS:
            v, text = _fmt(r.get(c), c)
            title = f' title="{e(r["error"] or "")}"' if c == "status" and r["error"] else ""
            cells.append(f'<td class="c-{c}" data-v="{e(v)}"{title}>{e(text)}</td>')
        body.append(f'<tr class="{cls}" data-id="{r["id"]}">{"".join(cells)}</tr>')

    def kv(k: str, v: Any) -> str:
        return f"<tr><td>{e(k)}</td><td>{e('' if v is None else str(v))}</td></tr>"

    s = summary
    info = "".join([kv("experiment", s["dir"]), kv("strategy", s.get("strategy")),
                    kv("trials", s["trials"]), kv("completed", s["completed"]), kv("failed", s["failed"]),
                    kv("running", s["running"]), kv("unique architectures", s["unique_architectures"]),
                    kv("latency backend", s.get("backend")), kv("target T (ms)", s.get("target_ms")),
                    kv("alpha / beta", f"{s.get('alpha')} / {s.get('beta')}")])
    targets = "".join(
        f"<tr><td>{t['target_ms']:g}</td>" + (
            f"<td>{t['best']['id']}</td><td>{t['best']['accuracy']:.4f}</td><td>{t['best']['latency_ms']:.3f}</td>"
            f"<td class=arch>{e(t['best']['arch'])}</td>" if t["best"] else "<td colspan=4>none this fast</td>")
        + "</tr>" for t in s["targets"])
    figs = "".join(f'<figure><img alt="{e(name)}" src="{_img(p)}"><figcaption class=note>{e(Path(p).name)}'
                   f"</figcaption></figure>" for name, p in plots.items())
    best = s["best"]
    best_txt = (f"trial {best['id']}: accuracy {best['accuracy']:.4f}, latency {best['latency_ms']:.3f} ms, "
                f"reward {best['reward']:.4f}" if best and best.get("reward") is not None else "none yet")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>mnas report: {e(Path(s['dir']).name)}</title>
<style>{_CSS}</style></head><body>
<h1>mnas search report: {e(s['dir'])}</h1>
<table class="kv">{info}</table>
<p>Best by reward: {e(best_txt)}</p>
<h2>Plots</h2><div class="plots">{figs}</div>
<h2>Best model under each latency target</h2>
<table><thead><tr><th>target (ms)</th><th>trial</th><th>accuracy</th><th>latency (ms)</th><th>architecture</th>
</tr></thead><tbody>{targets}</tbody></table>
<h2>Trials</h2>
<p class="note">Showing <span id="rowcount">{len(rows)}</span> of {s['trials']} trials (completed by reward first;
Pareto-front rows highlighted, failed rows in red with the error on hover). Click a column header to sort.</p>
<table id="trials" data-shown="{len(rows)}"><thead><tr>{head}</tr></thead><tbody>
{chr(10).join(body)}
</tbody></table>
<script>{_JS}</script>
</body></html>
"""


def write_html(path: Path, summary: dict[str, Any], table: TrialTable, plots: dict[str, Path],
               limit: int = 1000) -> Path:
    path = Path(path)
    path.write_text(render(summary, table, plots, limit), encoding="utf-8")
    return path
