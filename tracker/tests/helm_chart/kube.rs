//! Checks of rendered objects against the Kubernetes API, for the kinds and fields this chart uses: the
//! apiVersion of each kind, required fields, the fields allowed (a subset of the API: a misspelt or
//! misplaced field is reported, a field the chart starts using must be added here), value types
//! (an `env` value or a label must be a string), name lengths, and the references between objects
//! (selectors, named ports, Secrets and keys, volumes, the ServiceAccount, `$(VAR)` in args).

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml_ng::Value;

use crate::chart::Object;

/// The apiVersion of each kind the chart may produce, and the top-level fields besides apiVersion, kind
/// and metadata.
const KINDS: &[(&str, &str, &[&str])] = &[
    ("Deployment", "apps/v1", &["spec"]),
    ("Service", "v1", &["spec"]),
    ("ServiceAccount", "v1", &["automountServiceAccountToken"]),
    ("Secret", "v1", &["type", "stringData", "data"]),
    ("ConfigMap", "v1", &["data"]),
    ("CronJob", "batch/v1", &["spec"]),
    ("Job", "batch/v1", &["spec"]),
    ("PodDisruptionBudget", "policy/v1", &["spec"]),
    ("NetworkPolicy", "networking.k8s.io/v1", &["spec"]),
    ("ServiceMonitor", "monitoring.coreos.com/v1", &["spec"]),
    ("PrometheusRule", "monitoring.coreos.com/v1", &["spec"]),
];

const POD_SPEC_FIELDS: &[&str] = &[
    "containers",
    "serviceAccountName",
    "automountServiceAccountToken",
    "securityContext",
    "imagePullSecrets",
    "terminationGracePeriodSeconds",
    "nodeSelector",
    "tolerations",
    "affinity",
    "restartPolicy",
    "volumes",
];

const CONTAINER_FIELDS: &[&str] = &[
    "name",
    "image",
    "imagePullPolicy",
    "args",
    "env",
    "envFrom",
    "ports",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "resources",
    "securityContext",
    "volumeMounts",
];

const PROBE_FIELDS: &[&str] = &[
    "httpGet",
    "initialDelaySeconds",
    "periodSeconds",
    "timeoutSeconds",
    "failureThreshold",
    "successThreshold",
];

/// What the checks know beyond the objects: Secrets that exist outside the chart.
pub struct Known<'a> {
    pub external_secrets: &'a [&'a str],
}

/// Every problem found in `objects`, as readable lines (empty = valid).
pub fn check(objects: &[Object], known: &Known) -> Vec<String> {
    let mut c = Checker {
        problems: Vec::new(),
        objects,
        known,
    };
    c.all();
    c.problems
}

struct Checker<'a> {
    problems: Vec<String>,
    objects: &'a [Object],
    known: &'a Known<'a>,
}

/// `v.a.b.c` by a dotted path.
pub fn at<'v>(v: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(v, |v, k| v.as_mapping()?.get(k))
}

fn keys(v: &Value) -> Vec<String> {
    v.as_mapping()
        .map(|m| {
            m.keys()
                .map(|k| k.as_str().unwrap_or("<non-string key>").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most `max` characters.
fn dns_label(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A label value: empty, or at most 63 of `[A-Za-z0-9._-]`, alphanumeric at both ends.
fn label_value(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric()))
}

/// A label or annotation key: optional DNS prefix and `/`, then a name like a label value (not empty).
fn label_key(s: &str) -> bool {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    prefix.is_none_or(|p| p.len() <= 253 && p.split('.').all(|l| dns_label(l, 63)))
        && !name.is_empty()
        && label_value(name)
}

/// A resource quantity: `100m`, `128Mi`, `1`, `0.5`, `2Gi`.
fn quantity(v: &Value) -> bool {
    match v {
        Value::Number(_) => true,
        Value::String(s) => {
            let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
            let suffix = &s[digits.len()..];
            !digits.is_empty()
                && digits.parse::<f64>().is_ok()
                && ["", "m", "k", "M", "G", "T", "Ki", "Mi", "Gi", "Ti"].contains(&suffix)
        }
        _ => false,
    }
}

/// A five-field cron schedule of digits, `*`, `/`, `,` and `-`.
fn cron(s: &str) -> bool {
    let fields: Vec<&str> = s.split_whitespace().collect();
    fields.len() == 5
        && fields
            .iter()
            .all(|f| f.chars().all(|c| c.is_ascii_digit() || "*/,-".contains(c)))
}

/// `a` is a subset of `b` (both string maps).
fn subset(a: &Value, b: &Value) -> bool {
    match (a.as_mapping(), b.as_mapping()) {
        (Some(a), Some(b)) => !a.is_empty() && a.iter().all(|(k, v)| b.get(k) == Some(v)),
        _ => false,
    }
}

impl<'a> Checker<'a> {
    fn problem(&mut self, o: &Object, what: impl std::fmt::Display) {
        self.problems
            .push(format!("{} {} ({}): {what}", o.kind(), o.name(), o.file));
    }

    fn only_fields(&mut self, o: &Object, where_: &str, v: &Value, allowed: &[&str]) {
        for k in keys(v) {
            if !allowed.contains(&k.as_str()) {
                self.problem(o, format!("{where_}: unknown field `{k}`"));
            }
        }
    }

    fn require<'v>(&mut self, o: &Object, v: &'v Value, path: &str) -> Option<&'v Value> {
        let found = at(v, path);
        if found.is_none_or(Value::is_null) {
            self.problem(o, format!("missing {path}"));
            return None;
        }
        found
    }

    fn string_map(&mut self, o: &Object, where_: &str, v: &Value, labels: bool) {
        let Some(m) = v.as_mapping() else {
            self.problem(o, format!("{where_} is not a map"));
            return;
        };
        for (k, val) in m {
            let key = k.as_str().unwrap_or("");
            if !label_key(key) {
                self.problem(o, format!("{where_}: invalid key `{key}`"));
            }
            match val.as_str() {
                None => self.problem(o, format!("{where_}.{key} is not a string: {val:?}")),
                Some(s) if labels && !label_value(s) => {
                    self.problem(o, format!("{where_}.{key}: invalid label value `{s}`"))
                }
                _ => {}
            }
        }
    }

    fn all(&mut self) {
        let mut seen = BTreeSet::new();
        for o in self.objects {
            if !seen.insert((o.kind().to_owned(), o.name().to_owned())) {
                self.problem(o, "two objects of this kind have this name");
            }
            self.object(o);
        }
    }

    fn object(&mut self, o: &Object) {
        let v = &o.value;
        let Some((_, api_version, fields)) = KINDS.iter().find(|(k, _, _)| *k == o.kind()) else {
            self.problem(o, "unknown kind");
            return;
        };
        if v["apiVersion"].as_str() != Some(*api_version) {
            self.problem(o, format!("apiVersion must be {api_version}"));
        }
        let mut allowed = vec!["apiVersion", "kind", "metadata"];
        allowed.extend_from_slice(fields);
        self.only_fields(o, "top level", v, &allowed);
        self.only_fields(
            o,
            "metadata",
            &v["metadata"],
            &["name", "labels", "annotations"],
        );
        let max_name = match o.kind() {
            "Service" | "Deployment" => 63,
            // the controller appends an 11-character suffix to the Job names
            "CronJob" => 52,
            _ => 253,
        };
        if !dns_label(o.name(), max_name) {
            self.problem(
                o,
                format!("metadata.name is not a DNS label of at most {max_name}"),
            );
        }
        if let Some(labels) = self.require(o, v, "metadata.labels") {
            self.string_map(o, "metadata.labels", labels, true);
        }
        if let Some(a) = at(v, "metadata.annotations") {
            self.string_map(o, "metadata.annotations", a, false);
        }
        match o.kind() {
            "Deployment" => self.deployment(o),
            "Service" => self.service(o),
            "Secret" => {
                if v["type"].as_str() != Some("Opaque") {
                    self.problem(o, "type must be Opaque");
                }
                if let Some(d) = self.require(o, v, "stringData") {
                    self.string_map(o, "stringData", d, false);
                }
            }
            "ConfigMap" => {
                if let Some(d) = self.require(o, v, "data") {
                    self.string_map(o, "data", d, false);
                }
            }
            "CronJob" => self.cronjob(o),
            "Job" => self.job(o, "spec", true),
            "PodDisruptionBudget" => {
                let spec = &v["spec"];
                self.only_fields(
                    o,
                    "spec",
                    spec,
                    &["maxUnavailable", "minAvailable", "selector"],
                );
                if spec.get("maxUnavailable").is_some() == spec.get("minAvailable").is_some() {
                    self.problem(o, "exactly one of minAvailable and maxUnavailable");
                }
                self.selects_pods(o, "spec.selector.matchLabels");
            }
            "NetworkPolicy" => self.network_policy(o),
            "ServiceMonitor" => self.service_monitor(o),
            "PrometheusRule"
                if self
                    .require(o, v, "spec.groups")
                    .and_then(Value::as_sequence)
                    .is_none() =>
            {
                self.problem(o, "spec.groups must be a list");
            }
            _ => {}
        }
    }

    /// The pod template labels of every Deployment.
    fn pod_labels(&self) -> Vec<(&'a Object, &'a Value)> {
        let objects: &'a [Object] = self.objects;
        objects
            .iter()
            .filter(|d| d.kind() == "Deployment")
            .filter_map(|d| at(&d.value, "spec.template.metadata.labels").map(|l| (d, l)))
            .collect()
    }

    /// The selector at `path` selects the pods of exactly one Deployment; returns it.
    fn selects_pods(&mut self, o: &Object, path: &str) -> Option<&'a Object> {
        let objects: &'a [Object] = self.objects;
        let selector = self.require(o, &o.value, path)?.clone();
        let matched: Vec<&Object> = self
            .pod_labels()
            .into_iter()
            .filter(|(_, labels)| subset(&selector, labels))
            .map(|(d, _)| d)
            .collect();
        if matched.len() != 1 {
            self.problem(
                o,
                format!("{path} selects the pods of {} Deployments", matched.len()),
            );
            return None;
        }
        // and no pod of another workload (the job pods carry the chart's labels too)
        for other in objects.iter().filter(|x| x.kind() == "CronJob") {
            if let Some(labels) = at(
                &other.value,
                "spec.jobTemplate.spec.template.metadata.labels",
            ) && subset(&selector, labels)
            {
                self.problem(
                    o,
                    format!("{path} also selects the pods of CronJob {}", other.name()),
                );
            }
        }
        Some(matched[0])
    }

    fn deployment(&mut self, o: &Object) {
        let v = &o.value;
        let spec = &v["spec"];
        self.only_fields(
            o,
            "spec",
            spec,
            &[
                "replicas",
                "revisionHistoryLimit",
                "strategy",
                "selector",
                "template",
            ],
        );
        if spec["replicas"].as_u64().is_none_or(|n| n < 1) {
            self.problem(o, "spec.replicas must be a number >= 1");
        }
        let selector = self.require(o, v, "spec.selector.matchLabels").cloned();
        let labels = self.require(o, v, "spec.template.metadata.labels").cloned();
        if let (Some(s), Some(l)) = (selector, labels)
            && !subset(&s, &l)
        {
            self.problem(
                o,
                "spec.selector.matchLabels do not select the pod template's labels",
            );
        }
        if let Some(l) = at(v, "spec.template.metadata.labels") {
            self.string_map(o, "pod labels", l, true);
        }
        if let Some(pod) = self.require(o, v, "spec.template.spec") {
            self.pod(o, pod, false, false);
        }
    }

    fn cronjob(&mut self, o: &Object) {
        let v = &o.value;
        let spec = &v["spec"];
        self.only_fields(
            o,
            "spec",
            spec,
            &[
                "schedule",
                "timeZone",
                "concurrencyPolicy",
                "startingDeadlineSeconds",
                "successfulJobsHistoryLimit",
                "failedJobsHistoryLimit",
                "jobTemplate",
            ],
        );
        if !spec["schedule"].as_str().is_some_and(cron) {
            self.problem(
                o,
                format!(
                    "spec.schedule is not a cron schedule: {:?}",
                    spec["schedule"]
                ),
            );
        }
        if spec["timeZone"].as_str().is_none_or(str::is_empty) {
            self.problem(o, "spec.timeZone must be a string");
        }
        if !["Allow", "Forbid", "Replace"]
            .contains(&spec["concurrencyPolicy"].as_str().unwrap_or(""))
        {
            self.problem(o, "spec.concurrencyPolicy must be Allow, Forbid or Replace");
        }
        self.job(o, "spec.jobTemplate.spec", false);
    }

    fn job(&mut self, o: &Object, path: &str, hook: bool) {
        let Some(spec) = self.require(o, &o.value, path) else {
            return;
        };
        self.only_fields(
            o,
            path,
            spec,
            &["backoffLimit", "activeDeadlineSeconds", "template"],
        );
        for field in ["backoffLimit", "activeDeadlineSeconds"] {
            if spec.get(field).is_some_and(|n| n.as_u64().is_none()) {
                self.problem(o, format!("{path}.{field} must be a number"));
            }
        }
        if hook {
            let hook = o.value["metadata"]["annotations"]
                .get("helm.sh/hook")
                .and_then(Value::as_str)
                .unwrap_or("");
            if hook.is_empty() {
                self.problem(
                    o,
                    "a Job of the chart must be a Helm hook (helm.sh/hook annotation)",
                );
            }
        }
        let pod = spec["template"]["spec"].clone();
        self.pod(o, &pod, true, hook);
    }

    fn pod(&mut self, o: &Object, pod: &Value, job: bool, hook: bool) {
        self.only_fields(o, "pod spec", pod, POD_SPEC_FIELDS);
        let restart = pod["restartPolicy"].as_str();
        if job && !matches!(restart, Some("Never" | "OnFailure")) {
            self.problem(o, "a job pod's restartPolicy must be Never or OnFailure");
        }
        if !job && !matches!(restart, None | Some("Always")) {
            self.problem(o, "a Deployment pod restarts Always");
        }
        if pod["securityContext"]["runAsNonRoot"].as_bool() != Some(true) {
            self.problem(o, "pod securityContext.runAsNonRoot must be true");
        }
        if pod["automountServiceAccountToken"].as_bool() != Some(false) {
            self.problem(
                o,
                "the pods do not call the Kubernetes API: automountServiceAccountToken false",
            );
        }
        match pod["serviceAccountName"].as_str() {
            Some(sa) if hook => self.problem(
                o,
                format!("a hook runs before the chart's objects exist: serviceAccountName {sa}"),
            ),
            Some(sa)
                if !self
                    .objects
                    .iter()
                    .any(|x| x.kind() == "ServiceAccount" && x.name() == sa) =>
            {
                self.problem(
                    o,
                    format!("serviceAccountName {sa} is not an object of the chart"),
                )
            }
            None if !hook => self.problem(o, "serviceAccountName missing"),
            _ => {}
        }
        let volumes: BTreeMap<String, Value> = pod["volumes"]
            .as_sequence()
            .map(|s| {
                s.iter()
                    .map(|v| (v["name"].as_str().unwrap_or("").to_owned(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        for (name, volume) in &volumes {
            self.only_fields(
                o,
                &format!("volume {name}"),
                volume,
                &["name", "emptyDir", "secret", "persistentVolumeClaim"],
            );
            if keys(volume).len() != 2 {
                self.problem(o, format!("volume {name} needs exactly one source"));
            }
            if let Some(secret) = volume.get("secret") {
                let secret_name = secret["secretName"].as_str().unwrap_or("");
                for item in secret["items"].as_sequence().into_iter().flatten() {
                    let key = item["key"].as_str().unwrap_or("");
                    self.secret_key(o, secret_name, key, hook, false);
                }
            }
            if let Some(claim) = volume.get("persistentVolumeClaim")
                && claim["claimName"].as_str().is_none_or(str::is_empty)
            {
                self.problem(o, format!("volume {name}: claimName missing"));
            }
        }
        let Some(containers) = pod["containers"].as_sequence().filter(|c| !c.is_empty()) else {
            self.problem(o, "no containers");
            return;
        };
        for container in containers {
            self.container(o, container, &volumes, job, hook);
        }
    }

    /// `secret` exists (in the chart, or outside it) and holds `key` (unless the reference is optional).
    fn secret_key(&mut self, o: &Object, secret: &str, key: &str, hook: bool, optional: bool) {
        if self.known.external_secrets.contains(&secret) {
            return;
        }
        let found = self
            .objects
            .iter()
            .find(|x| x.kind() == "Secret" && x.name() == secret);
        match found {
            None => self.problem(
                o,
                format!("Secret {secret} is neither an object of the chart nor external"),
            ),
            Some(_) if hook => self.problem(
                o,
                format!("a hook runs before the chart's Secret {secret} exists"),
            ),
            Some(s) if !optional && s.value["stringData"].get(key).is_none() => {
                self.problem(o, format!("Secret {secret} has no key {key}"))
            }
            Some(_) => {}
        }
    }

    fn container(
        &mut self,
        o: &Object,
        c: &Value,
        volumes: &BTreeMap<String, Value>,
        job: bool,
        hook: bool,
    ) {
        let name = c["name"].as_str().unwrap_or("").to_owned();
        let where_ = format!("container {name}");
        self.only_fields(o, &where_, c, CONTAINER_FIELDS);
        if !dns_label(&name, 63) {
            self.problem(o, format!("{where_}: invalid name"));
        }
        if c["image"]
            .as_str()
            .is_none_or(|i| i.is_empty() || i.ends_with(':'))
        {
            self.problem(o, format!("{where_}: image missing or without tag"));
        }
        if !matches!(
            c["imagePullPolicy"].as_str(),
            Some("Always" | "IfNotPresent" | "Never")
        ) {
            self.problem(
                o,
                format!("{where_}: imagePullPolicy must be Always, IfNotPresent or Never"),
            );
        }
        let sc = &c["securityContext"];
        if sc["readOnlyRootFilesystem"].as_bool() != Some(true)
            || sc["allowPrivilegeEscalation"].as_bool() != Some(false)
            || !sc["capabilities"]["drop"]
                .as_sequence()
                .is_some_and(|d| d.contains(&Value::from("ALL")))
        {
            self.problem(o, format!("{where_}: securityContext must be read-only, without privilege escalation, capabilities dropped"));
        }
        for part in ["requests", "limits"] {
            match c["resources"].get(part).and_then(Value::as_mapping) {
                Some(m) => {
                    for (k, q) in m {
                        if !quantity(q) {
                            self.problem(
                                o,
                                format!("{where_}: resources.{part}.{k:?} is not a quantity"),
                            );
                        }
                    }
                }
                None => self.problem(o, format!("{where_}: resources.{part} missing")),
            }
        }
        // env: names unique, value a string or valueFrom
        let mut env_names = BTreeSet::new();
        for e in c["env"].as_sequence().into_iter().flatten() {
            let n = e["name"].as_str().unwrap_or("");
            self.only_fields(
                o,
                &format!("{where_} env {n}"),
                e,
                &["name", "value", "valueFrom"],
            );
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                self.problem(o, format!("{where_}: invalid env name {n:?}"));
            }
            if !env_names.insert(n.to_owned()) {
                self.problem(o, format!("{where_}: env {n} twice"));
            }
            match (e.get("value"), e.get("valueFrom")) {
                (Some(Value::String(_)), None) => {}
                (None, Some(from)) => {
                    if let Some(r) = from.get("secretKeyRef") {
                        let (s, k) = (
                            r["name"].as_str().unwrap_or(""),
                            r["key"].as_str().unwrap_or(""),
                        );
                        let optional = r["optional"].as_bool() == Some(true);
                        self.secret_key(o, s, k, hook, optional);
                    } else if from["fieldRef"]["fieldPath"].as_str().is_none() {
                        self.problem(
                            o,
                            format!(
                                "{where_}: env {n}: valueFrom must be secretKeyRef or fieldRef"
                            ),
                        );
                    }
                }
                (Some(v), None) => self.problem(
                    o,
                    format!("{where_}: env {n}: value must be a string, got {v:?}"),
                ),
                _ => self.problem(
                    o,
                    format!("{where_}: env {n}: exactly one of value and valueFrom"),
                ),
            }
        }
        for e in c["envFrom"].as_sequence().into_iter().flatten() {
            if e["secretRef"]["name"].as_str().is_none_or(str::is_empty) {
                self.problem(o, format!("{where_}: envFrom needs secretRef.name"));
            }
        }
        // args: strings; $(VAR) only of defined variables
        for a in c["args"].as_sequence().into_iter().flatten() {
            let Some(a) = a.as_str() else {
                self.problem(o, format!("{where_}: arg {a:?} is not a string"));
                continue;
            };
            let mut rest = a;
            while let Some(i) = rest.find("$(") {
                let tail = &rest[i + 2..];
                let end = tail.find(')').unwrap_or(tail.len());
                if !env_names.contains(&tail[..end]) {
                    self.problem(
                        o,
                        format!(
                            "{where_}: arg {a} uses $({}) which is not in env",
                            &tail[..end]
                        ),
                    );
                }
                rest = &tail[end..];
            }
        }
        // ports and probes
        let mut port_names = BTreeSet::new();
        for p in c["ports"].as_sequence().into_iter().flatten() {
            let pn = p["name"].as_str().unwrap_or("");
            if !dns_label(pn, 15) {
                self.problem(
                    o,
                    format!("{where_}: port name {pn:?} is not a DNS label of at most 15"),
                );
            }
            if !p["containerPort"]
                .as_u64()
                .is_some_and(|n| (1..=65535).contains(&n))
            {
                self.problem(
                    o,
                    format!("{where_}: containerPort of {pn} must be 1..65535"),
                );
            }
            port_names.insert(pn.to_owned());
        }
        for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
            let Some(p) = c.get(probe) else {
                if !job {
                    self.problem(o, format!("{where_}: {probe} missing"));
                }
                continue;
            };
            self.only_fields(o, &format!("{where_} {probe}"), p, PROBE_FIELDS);
            let get = &p["httpGet"];
            if !get["path"].as_str().is_some_and(|s| s.starts_with('/')) {
                self.problem(o, format!("{where_}: {probe}.httpGet.path missing"));
            }
            if !get["port"].as_str().is_some_and(|n| port_names.contains(n)) {
                self.problem(
                    o,
                    format!("{where_}: {probe}.httpGet.port is not a named port"),
                );
            }
            for (k, v) in p.as_mapping().into_iter().flatten() {
                if k.as_str() != Some("httpGet") && v.as_u64().is_none_or(|n| n == 0) {
                    self.problem(
                        o,
                        format!("{where_}: {probe}.{k:?} must be a positive number"),
                    );
                }
            }
        }
        for m in c["volumeMounts"].as_sequence().into_iter().flatten() {
            let vn = m["name"].as_str().unwrap_or("");
            if !volumes.contains_key(vn) {
                self.problem(o, format!("{where_}: volumeMount {vn} has no volume"));
            }
            if !m["mountPath"].as_str().is_some_and(|p| p.starts_with('/')) {
                self.problem(
                    o,
                    format!("{where_}: volumeMount {vn} needs an absolute mountPath"),
                );
            }
        }
    }

    fn service(&mut self, o: &Object) {
        let v = &o.value;
        self.only_fields(o, "spec", &v["spec"], &["type", "selector", "ports"]);
        if !matches!(
            v["spec"]["type"].as_str(),
            Some("ClusterIP" | "NodePort" | "LoadBalancer")
        ) {
            self.problem(o, "spec.type must be ClusterIP, NodePort or LoadBalancer");
        }
        let Some(deployment) = self.selects_pods(o, "spec.selector") else {
            return;
        };
        let named = container_port_names(deployment);
        for p in v["spec"]["ports"].as_sequence().into_iter().flatten() {
            if !p["port"].as_u64().is_some_and(|n| (1..=65535).contains(&n)) {
                self.problem(o, "a port must be 1..65535");
            }
            let target = p["targetPort"].as_str().unwrap_or("");
            if !named.contains(target) {
                self.problem(
                    o,
                    format!("targetPort {target} is not a named port of the pods"),
                );
            }
        }
    }

    fn network_policy(&mut self, o: &Object) {
        let v = &o.value;
        self.only_fields(
            o,
            "spec",
            &v["spec"],
            &["podSelector", "policyTypes", "ingress", "egress"],
        );
        let Some(deployment) = self.selects_pods(o, "spec.podSelector.matchLabels") else {
            return;
        };
        let named = container_port_names(deployment);
        for rule in v["spec"]["ingress"].as_sequence().into_iter().flatten() {
            for p in rule["ports"].as_sequence().into_iter().flatten() {
                if !p["port"].as_str().is_some_and(|n| named.contains(n)) {
                    self.problem(o, "an ingress port is not a named port of the pods");
                }
            }
        }
        let types: Vec<&str> = v["spec"]["policyTypes"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if types.contains(&"Egress") != v["spec"].get("egress").is_some() {
            self.problem(
                o,
                "policyTypes lists Egress exactly when egress rules are given",
            );
        }
    }

    fn service_monitor(&mut self, o: &Object) {
        let v = &o.value;
        let selector = v["spec"]["selector"]["matchLabels"].clone();
        let services: Vec<&Object> = self
            .objects
            .iter()
            .filter(|s| s.kind() == "Service" && subset(&selector, &s.value["metadata"]["labels"]))
            .collect();
        if services.len() != 1 {
            self.problem(
                o,
                format!("spec.selector selects {} Services", services.len()),
            );
            return;
        }
        let port_names: BTreeSet<String> = services[0].value["spec"]["ports"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|p| p["name"].as_str().map(str::to_owned))
            .collect();
        for e in v["spec"]["endpoints"].as_sequence().into_iter().flatten() {
            if !e["port"].as_str().is_some_and(|p| port_names.contains(p)) {
                self.problem(o, "an endpoint port is not a named port of the Service");
            }
            if let Some(creds) = e.get("authorization").map(|a| &a["credentials"]) {
                let (s, k) = (
                    creds["name"].as_str().unwrap_or(""),
                    creds["key"].as_str().unwrap_or(""),
                );
                self.secret_key(o, s, k, false, false);
            }
        }
    }
}

fn container_port_names(deployment: &Object) -> BTreeSet<String> {
    at(&deployment.value, "spec.template.spec.containers")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .flat_map(|c| c["ports"].as_sequence().cloned().unwrap_or_default())
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect()
}
