//! `/metrics` read with a Prometheus text-format parser (`prometheus-parse`), not by string search.

pub fn parse(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .unwrap_or_else(|e| panic!("/metrics does not parse: {e}\n{text}"))
}

/// The value of the first sample of `name` carrying `labels` (a counter, gauge or untyped sample).
pub fn value(
    scrape: &prometheus_parse::Scrape,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .and_then(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => Some(v),
            _ => None,
        })
}

/// Every sample name, histograms also under their `_bucket`, `_sum` and `_count` series names.
pub fn names(scrape: &prometheus_parse::Scrape) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for s in &scrape.samples {
        out.insert(s.metric.clone());
        if matches!(s.value, prometheus_parse::Value::Histogram(_)) {
            for suffix in ["_bucket", "_sum", "_count"] {
                out.insert(format!("{}{suffix}", s.metric));
            }
        }
    }
    out
}
