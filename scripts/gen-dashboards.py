#!/usr/bin/env python3
"""Writes the Grafana dashboards under dashboards/ (run after changing this file; the JSON
is committed so Grafana and the tests need no Python). Datasources are template variables:
no hard-coded uids."""
import json, os

OUT = os.path.join(os.path.dirname(__file__), "..", "dashboards")
PROM = {"type": "prometheus", "uid": "${datasource}"}
FLUX = {"type": "influxdb", "uid": "${datasource}"}

LEVELS = [
    ("0", "normal", "green"), ("1", "warning", "yellow"), ("2", "alarm", "orange"), ("3", "critical", "red"),
]

def level_mappings():
    return [{"type": "value", "options": {v: {"text": t.upper(), "color": c, "index": i}
             for i, (v, t, c) in enumerate(LEVELS)}}]

def thresholds(steps):
    base = [{"color": "green", "value": None}]
    colors = ["yellow", "orange", "red"]
    return {"mode": "absolute", "steps": base + [{"color": colors[i], "value": v} for i, v in enumerate(steps)]}

class Board:
    def __init__(self, uid, title, ds, variables):
        self.uid, self.title, self.ds, self.variables = uid, title, ds, variables
        self.panels, self.next_id, self.y = [], 1, 0
        self.annotations = []

    def add(self, kind, title, targets, w=24, h=8, unit=None, extra=None, x=0, newrow=True):
        p = {
            "id": self.next_id, "type": kind, "title": title, "datasource": self.ds,
            "gridPos": {"h": h, "w": w, "x": x, "y": self.y},
            "targets": [dict(t, refId=chr(65 + i), datasource=self.ds) for i, t in enumerate(targets)],
            "fieldConfig": {"defaults": {}, "overrides": []}, "options": {},
        }
        if unit:
            p["fieldConfig"]["defaults"]["unit"] = unit
        if extra:
            for k, v in extra.items():
                if k == "defaults":
                    p["fieldConfig"]["defaults"].update(v)
                else:
                    p[k] = v
        self.next_id += 1
        self.panels.append(p)
        if newrow or x + w >= 24:
            self.y += h
        return p

    def write(self, name):
        doc = {
            "uid": self.uid, "title": self.title, "tags": ["firebreak"], "timezone": "browser",
            "schemaVersion": 39, "version": 1, "editable": True, "refresh": "5s",
            "time": {"from": "now-30m", "to": "now"},
            "templating": {"list": self.variables},
            "annotations": {"list": self.annotations},
            "panels": self.panels,
        }
        with open(os.path.join(OUT, name), "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")

def prom_vars():
    return [
        {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
         "current": {}, "hide": 0},
        {"name": "zone", "label": "Zone", "type": "query", "datasource": PROM,
         "query": {"query": "label_values(firebreak_zone_level, zone)", "refId": "zones"},
         "definition": "label_values(firebreak_zone_level, zone)", "includeAll": True, "multi": True,
         "current": {"text": "All", "value": "$__all"}, "refresh": 2, "hide": 0},
    ]

def prom(expr, legend=None, instant=False):
    t = {"expr": expr, "range": not instant, "instant": instant}
    if legend:
        t["legendFormat"] = legend
    return t

def room_overview_prometheus():
    b = Board("firebreak-room-overview", "Firebreak room overview", PROM, prom_vars())
    b.annotations = [{
        "name": "Runbook steps", "enable": True, "iconColor": "purple", "datasource": PROM,
        "expr": "increase(firebreak_runbook_steps_total[1m]) > 0", "step": "15s",
        "titleFormat": "{{runbook}}: {{step}}", "textFormat": "outcome {{outcome}}", "tagKeys": "outcome",
    }]
    b.add("state-timeline", "Zone level", [prom('firebreak_zone_level{zone=~"$zone"}', "{{zone}}")],
          w=16, h=6, newrow=False,
          extra={"defaults": {"mappings": level_mappings(), "min": 0, "max": 3, "unit": "none",
                              "thresholds": thresholds([1, 2, 3])}})
    b.add("stat", "Safe to cut power", [prom('firebreak_safe_to_cut_power{zone=~"$zone"}', "{{zone}}")],
          w=8, h=6, x=16, unit="none",
          extra={"defaults": {"mappings": [{"type": "value", "options": {
              "0": {"text": "NOT SAFE", "color": "red", "index": 0},
              "1": {"text": "SAFE TO CUT POWER", "color": "green", "index": 1}}}]}})
    b.add("timeseries", "Temperatures", [prom('firebreak_sensor_value{zone=~"$zone",kind="temperature"}', "{{sensor}}")],
          w=12, h=8, newrow=False, unit="celsius",
          extra={"defaults": {"thresholds": thresholds([35, 57, 90]), "custom": {"thresholdsStyle": {"mode": "line"}}}})
    b.add("timeseries", "Off-gas", [prom('firebreak_sensor_value{zone=~"$zone",kind="offgas"}', "{{sensor}}")],
          w=12, h=8, x=12, unit="ppm",
          extra={"defaults": {"thresholds": thresholds([5, 20, 200]), "custom": {"thresholdsStyle": {"mode": "line"}}}})
    b.add("timeseries", "Smoke (% obscuration per metre)", [prom('firebreak_sensor_value{zone=~"$zone",kind="smoke"}', "{{sensor}}")],
          w=12, h=8, newrow=False, unit="percent",
          extra={"defaults": {"thresholds": thresholds([0.04, 0.165, 1.65]), "custom": {"thresholdsStyle": {"mode": "line"}}}})
    b.add("timeseries", "Temperature rate of rise (C per minute)",
          [prom('deriv(firebreak_sensor_value{zone=~"$zone",kind="temperature"}[1m]) * 60', "{{sensor}}")],
          w=12, h=8, x=12, unit="celsius",
          extra={"defaults": {"thresholds": thresholds([2, 8.3]), "custom": {"thresholdsStyle": {"mode": "line"}}}})
    b.add("state-timeline", "UPS on battery", [prom('firebreak_sensor_value{zone=~"$zone",kind="on_battery"}', "{{sensor}}")],
          w=8, h=6, newrow=False, unit="bool_on_off")
    b.add("timeseries", "UPS runtime left", [prom('firebreak_sensor_value{zone=~"$zone",kind="runtime"}', "{{sensor}}")],
          w=8, h=6, x=8, newrow=False, unit="s")
    b.add("timeseries", "UPS charge", [prom('firebreak_sensor_value{zone=~"$zone",kind="charge"}', "{{sensor}}")],
          w=8, h=6, x=16, unit="percent")
    b.add("table", "Incidents and sensors not ok",
          [prom('firebreak_incident_active{zone=~"$zone"} == 1', instant=True),
           prom('firebreak_sensor_state{zone=~"$zone",state!="ok"} == 1', instant=True)],
          w=24, h=8, unit="none",
          extra={"transformations": [{"id": "merge", "options": {}}]})
    b.add("timeseries", "Expected power loss in (UPS runtime on battery, or rising temperatures)",
          [prom('firebreak_zone_seconds_to_power_loss{zone=~"$zone"}', "{{zone}}")],
          w=24, h=7, unit="s",
          # Less time is worse: red below 5 min, orange below 10.
          extra={"defaults": {"thresholds": {"mode": "absolute", "steps": [
              {"color": "red", "value": None}, {"color": "orange", "value": 300},
              {"color": "green", "value": 600}]},
              "custom": {"thresholdsStyle": {"mode": "line"}}}})
    b.write("firebreak-room-overview.json")

def agent_health():
    b = Board("firebreak-agent-health", "Firebreak agent health", PROM, prom_vars()[:1])
    b.add("state-timeline", "Sources up", [prom("firebreak_source_up", "{{source}}")], w=12, h=6, newrow=False,
          unit="bool_on_off")
    b.add("stat", "Agent version", [prom("firebreak_build_info", "{{version}}", instant=True)], w=12, h=6, x=12,
          unit="none", extra={"options": {"textMode": "name"}})
    b.add("timeseries", "Poll latency p99",
          [prom("histogram_quantile(0.99, sum by (source, le) (rate(firebreak_source_poll_duration_seconds_bucket[5m])))", "{{source}}")],
          w=12, h=8, newrow=False, unit="s")
    b.add("timeseries", "Samples per second", [prom("sum by (source) (rate(firebreak_samples_total[1m]))", "{{source}}")],
          w=12, h=8, x=12, unit="reqps")
    b.add("timeseries", "Source errors by type",
          [prom("sum by (source, error) (rate(firebreak_source_errors_total[5m]))", "{{source}} {{error}}")],
          w=12, h=8, newrow=False, unit="reqps")
    b.add("timeseries", "Telemetry spool size", [prom("firebreak_telemetry_spool_bytes", "spool")],
          w=12, h=8, x=12, unit="bytes")
    b.add("timeseries", "Telemetry points dropped",
          [prom("sum by (reason) (increase(firebreak_telemetry_dropped_total[5m]))", "{{reason}}")],
          w=12, h=8, newrow=False, unit="short")
    b.add("timeseries", "Events written and event log errors",
          [prom("sum by (event) (rate(firebreak_events_total[5m]))", "{{event}}"),
           prom("sum by (event) (rate(firebreak_event_log_errors_total[5m]))", "error {{event}}")],
          w=12, h=8, x=12, unit="reqps")
    b.add("timeseries", "Runbook duration p95",
          [prom("histogram_quantile(0.95, sum by (runbook, le) (rate(firebreak_runbook_duration_seconds_bucket[1h])))", "{{runbook}}")],
          w=24, h=8, unit="s")
    b.write("firebreak-agent-health.json")

def flux(query):
    return {"query": query}

def room_overview_flux():
    variables = [
        {"name": "datasource", "label": "InfluxDB (Flux)", "type": "datasource", "query": "influxdb",
         "current": {}, "hide": 0},
        {"name": "bucket", "label": "Bucket", "type": "textbox", "query": "firebreak",
         "current": {"text": "firebreak", "value": "firebreak"}, "hide": 0},
        {"name": "zone", "label": "Zone (regex)", "type": "textbox", "query": ".*",
         "current": {"text": ".*", "value": ".*"}, "hide": 0},
    ]
    b = Board("firebreak-room-overview-flux", "Firebreak room overview (InfluxDB, long history)", FLUX, variables)
    def sensor(kind):
        return flux(
            'from(bucket: "${bucket}")\n'
            '  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)\n'
            f'  |> filter(fn: (r) => r._measurement == "firebreak_sensor" and r._field == "value" and r.kind == "{kind}" and r.zone =~ /${{zone}}/)\n'
            '  |> aggregateWindow(every: v.windowPeriod, fn: max, createEmpty: false)\n'
            '  |> keep(columns: ["_time", "_value", "sensor"])')
    b.add("state-timeline", "Zone level", [flux(
        'from(bucket: "${bucket}")\n'
        '  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)\n'
        '  |> filter(fn: (r) => r._measurement == "firebreak_zone" and r._field == "level" and r.zone =~ /${zone}/)\n'
        '  |> keep(columns: ["_time", "_value", "zone"])')],
        w=24, h=6, extra={"defaults": {"mappings": level_mappings(), "min": 0, "max": 3, "unit": "none"}})
    b.add("timeseries", "Temperatures", [sensor("temperature")], w=12, h=8, newrow=False, unit="celsius",
          extra={"defaults": {"thresholds": thresholds([35, 57, 90]), "custom": {"thresholdsStyle": {"mode": "line"}}}})
    b.add("timeseries", "Off-gas", [sensor("offgas")], w=12, h=8, x=12, unit="ppm",
          extra={"defaults": {"thresholds": thresholds([5, 20, 200]), "custom": {"thresholdsStyle": {"mode": "line"}}}})
    b.add("timeseries", "Smoke (% obscuration per metre)", [sensor("smoke")], w=12, h=8, newrow=False, unit="percent",
          extra={"defaults": {"thresholds": thresholds([0.04, 0.165, 1.65]), "custom": {"thresholdsStyle": {"mode": "line"}}}})
    b.add("timeseries", "UPS runtime left", [sensor("runtime")], w=12, h=8, x=12, unit="s")
    b.add("table", "Events", [flux(
        'from(bucket: "${bucket}")\n'
        '  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)\n'
        '  |> filter(fn: (r) => r._measurement == "firebreak_event" and r._field == "detail")\n'
        '  |> keep(columns: ["_time", "event", "_value"])\n'
        '  |> sort(columns: ["_time"], desc: true)')], w=24, h=10, unit="none")
    b.write("firebreak-room-overview-flux.json")

room_overview_prometheus()
agent_health()
room_overview_flux()
with open(os.path.join(OUT, "provisioning", "dashboards.yaml"), "w") as f:
    f.write("""# Grafana provisioning: copy to /etc/grafana/provisioning/dashboards/firebreak.yaml and
# point `path` at the folder holding the dashboard JSON (the .deb installs it under
# /usr/share/firebreak/dashboards).
apiVersion: 1
providers:
  - name: firebreak
    folder: Firebreak
    type: file
    disableDeletion: false
    allowUiUpdates: true
    options:
      path: /usr/share/firebreak/dashboards
      foldersFromFilesStructure: false
""")
with open(os.path.join(OUT, "provisioning", "datasources.yaml"), "w") as f:
    f.write("""# Example Grafana datasources (the dashboards pick theirs through a `datasource`
# variable, so any Prometheus / InfluxDB datasource works; these are only a starting point).
apiVersion: 1
datasources:
  - name: Prometheus
    type: prometheus
    access: proxy
    url: http://127.0.0.1:9090
  - name: InfluxDB (Flux)
    type: influxdb
    access: proxy
    url: http://127.0.0.1:8086
    jsonData:
      version: Flux
      organization: dc-ops
      defaultBucket: firebreak
    secureJsonData:
      token: $INFLUX_TOKEN
""")
