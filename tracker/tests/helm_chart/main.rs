//! The Helm chart `deploy/helm/saga-tracker`, checked without a `helm` binary: its templates are rendered by
//! a renderer of exactly the template subset the chart uses (`template.rs`), the output is parsed as YAML and
//! checked as Kubernetes objects (`kube.rs`), the tracker's command line in the Deployment is parsed by the
//! service's own flag parser, `.Values` used and defined must agree (and be documented), and the dashboard and
//! alert rules in the chart must be the files of `deploy/grafana` and `deploy/prometheus`.

mod chart;
mod kube;
mod template;

use std::collections::{BTreeMap, BTreeSet};

use clap::{CommandFactory, Parser};
use saga_tracker_service::{Assignment, Config};
use serde_yaml_ng::Value;

use chart::{Chart, Object, Rendered, documented_keys, key_paths, yaml, yaml11_ambiguous};
use kube::{Known, at, check};

/// Secrets the full example values name but do not create.
const FULL_EXTERNAL_SECRETS: &[&str] = &[
    "saga-tracker-credentials",
    "kafka-user-saga-tracker",
    "saga-tracker-s3",
];

fn minimal() -> (Chart, Rendered) {
    let chart = Chart::load();
    let rendered = chart
        .render(&chart.ci_values("minimal-values.yaml"))
        .unwrap_or_else(|e| panic!("minimal values: {e}"));
    (chart, rendered)
}

fn full() -> (Chart, Rendered) {
    let chart = Chart::load();
    let rendered = chart
        .render(&chart.ci_values("full-values.yaml"))
        .unwrap_or_else(|e| panic!("full values: {e}"));
    (chart, rendered)
}

fn assert_valid(rendered: &Rendered, external_secrets: &[&str]) {
    let problems = check(&rendered.objects, &Known { external_secrets });
    assert!(
        problems.is_empty(),
        "invalid objects:\n{}",
        problems.join("\n")
    );
}

fn kinds(rendered: &Rendered) -> Vec<String> {
    rendered
        .kinds()
        .into_iter()
        .map(|(k, n)| format!("{k}/{n}"))
        .collect()
}

#[test]
fn the_defaults_alone_ask_for_the_database_and_the_brokers() {
    let chart = Chart::load();
    let err = chart
        .render("")
        .err()
        .expect("values.yaml alone must not render");
    assert!(
        err.contains("secret.databaseUrl is required") || err.contains("kafka.brokers is required"),
        "{err}"
    );
    let err = chart
        .render("secret: {databaseUrl: postgres://db/tracker}")
        .err()
        .expect("no brokers");
    assert!(err.contains("kafka.brokers is required"), "{err}");
    let err = chart
        .render("kafka: {brokers: k:9092}")
        .err()
        .expect("no database");
    assert!(err.contains("secret.databaseUrl is required"), "{err}");
    let err = chart
        .render_layers(&[
            &chart.ci_values("minimal-values.yaml"),
            "auth: {apiToken: true}",
        ])
        .err()
        .expect("token on without a token");
    assert!(err.contains("secret.apiToken is required"), "{err}");
}

#[test]
fn minimal_values_render_the_tracker_its_jobs_and_dashboards() {
    let (_, rendered) = minimal();
    assert_valid(&rendered, &[]);
    assert_eq!(
        kinds(&rendered),
        [
            "ConfigMap/orders-saga-tracker-alerts",
            "ConfigMap/orders-saga-tracker-dashboard",
            "CronJob/orders-saga-tracker-archive",
            "CronJob/orders-saga-tracker-reconcile",
            "Deployment/orders-saga-tracker",
            "PodDisruptionBudget/orders-saga-tracker",
            "Secret/orders-saga-tracker",
            "Service/orders-saga-tracker",
            "ServiceAccount/orders-saga-tracker",
        ]
    );
    let secret = rendered.one("Secret", "saga-tracker");
    assert_eq!(
        secret.value["stringData"],
        yaml(
            "database-url: postgres://tracker:change-me@postgres.databases:5432/tracker",
            "expected"
        )
    );
    assert!(
        rendered
            .notes
            .contains("orders-saga-tracker.sagas:8080/api/v1/stats"),
        "{}",
        rendered.notes
    );

    // the services' outbox databases for the reconciliation: a Secret key, read by the reconcile job
    let chart = Chart::load();
    let rendered = chart
        .render_layers(&[
            &chart.ci_values("minimal-values.yaml"),
            "secret:\n  outboxDatabaseUrls: postgres://o@db/orders postgres://p@db/payments",
        ])
        .expect("renders");
    assert_valid(&rendered, &[]);
    let secret = rendered.one("Secret", "saga-tracker");
    assert_eq!(
        secret.value["stringData"]["outbox-database-urls"],
        "postgres://o@db/orders postgres://p@db/payments"
    );
    let reconcile = rendered.one("CronJob", "-reconcile");
    let container =
        &reconcile.value["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    let env = env_of(container);
    assert_eq!(env["TRACKER_STUCK_AFTER_MINUTES"], "15");
    let secrets: Vec<&Object> = rendered.of_kind("Secret").collect();
    assert_eq!(
        env_values(container, &secrets)["TRACKER_OUTBOX_DATABASE_URLS"],
        "postgres://o@db/orders postgres://p@db/payments"
    );
}

#[test]
fn full_values_render_every_optional_part() {
    let (_, rendered) = full();
    assert_valid(&rendered, FULL_EXTERNAL_SECRETS);
    assert_eq!(
        kinds(&rendered),
        [
            "ConfigMap/saga-tracker-alerts",
            "ConfigMap/saga-tracker-dashboard",
            "CronJob/saga-tracker-archive",
            "CronJob/saga-tracker-reconcile",
            "Deployment/saga-tracker",
            "Job/saga-tracker-topics",
            "NetworkPolicy/saga-tracker",
            "PodDisruptionBudget/saga-tracker",
            "PrometheusRule/saga-tracker",
            "Service/saga-tracker",
            "ServiceAccount/saga-tracker",
            "ServiceMonitor/saga-tracker",
        ],
        "existingSecret: no Secret of the chart"
    );
    let monitor = rendered.one("ServiceMonitor", "saga-tracker");
    assert_eq!(
        monitor.value["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    assert_eq!(
        monitor.value["spec"]["endpoints"][0]["authorization"]["credentials"],
        yaml(
            "{name: saga-tracker-credentials, key: metrics-token}",
            "expected"
        )
    );
    let deployment = rendered.one("Deployment", "saga-tracker");
    let pod = &deployment.value["spec"]["template"]["spec"];
    assert_eq!(
        pod["volumes"][1],
        yaml(
            "{name: tokens, secret: {secretName: saga-tracker-credentials, items: [{key: api-token, path: api-token}, {key: metrics-token, path: metrics-token}]}}",
            "expected"
        )
    );
    let env = env_of(&pod["containers"][0]);
    assert_eq!(
        env["TRACKER_API_TOKEN_FILE"],
        "/etc/saga-tracker/tokens/api-token"
    );
    assert_eq!(
        env["TRACKER_METRICS_TOKEN_FILE"],
        "/etc/saga-tracker/tokens/metrics-token"
    );
    assert_eq!(env["DATABASE_SCHEMA"], "tracker");
    let archive = rendered.one("CronJob", "-archive");
    let job_pod = &archive.value["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(
        job_pod["containers"][0]["envFrom"][0]["secretRef"]["name"],
        "saga-tracker-s3"
    );
    assert_eq!(
        job_pod["volumes"].as_sequence().map(Vec::len),
        Some(1),
        "S3: no archive volume"
    );
}

#[test]
fn the_probes_use_the_health_routes_and_the_pods_run_locked_down() {
    for (_, rendered) in [minimal(), full()] {
        let deployment = rendered.one("Deployment", "saga-tracker");
        let container = &deployment.value["spec"]["template"]["spec"]["containers"][0];
        for (probe, path) in [
            ("livenessProbe", "/livez"),
            ("readinessProbe", "/readyz"),
            ("startupProbe", "/livez"),
        ] {
            assert_eq!(container[probe]["httpGet"]["path"], path, "{probe}");
            assert_eq!(container[probe]["httpGet"]["port"], "http", "{probe}");
        }
        assert_eq!(container["ports"][0]["containerPort"], 8080);
        let pod = &deployment.value["spec"]["template"]["spec"];
        assert_eq!(
            pod["securityContext"]["runAsUser"], 65532,
            "the image's user"
        );
        assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(
            container["resources"]["limits"]["memory"], "512Mi",
            "resources set by default"
        );
    }
}

/// The container's env as name -> literal value (valueFrom entries as `<from …>`).
fn env_of(container: &Value) -> BTreeMap<String, String> {
    container["env"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|e| {
            let value = match e.get("value") {
                Some(v) => v.as_str().unwrap_or("").to_owned(),
                None => format!("<from {:?}>", e["valueFrom"]),
            };
            (e["name"].as_str().unwrap_or("").to_owned(), value)
        })
        .collect()
}

/// A pod name, as the Deployment controller makes them.
const POD_NAME: &str = "orders-saga-tracker-6d5f8b7c9-x2k4q";

/// The value the container would see for each env entry: literals, the chart's Secret values (or a
/// placeholder for an external Secret), the pod name for metadata.name.
fn env_values(container: &Value, secrets: &[&Object]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in container["env"].as_sequence().into_iter().flatten() {
        let name = e["name"].as_str().expect("env name").to_owned();
        let value = if let Some(v) = e.get("value") {
            v.as_str().expect("env value is a string").to_owned()
        } else if let Some(r) = e["valueFrom"].get("secretKeyRef") {
            secrets
                .iter()
                .find(|s| Some(s.name()) == r["name"].as_str())
                .and_then(|s| s.value["stringData"][r["key"].as_str().unwrap_or("")].as_str())
                .unwrap_or("from-an-external-secret")
                .to_owned()
        } else {
            assert_eq!(e["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name");
            POD_NAME.to_owned()
        };
        out.insert(name, value);
    }
    out
}

/// Kubernetes' `$(VAR)` expansion of container args.
fn expand(arg: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = arg;
    while let Some(i) = rest.find("$(") {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 2..];
        let end = tail.find(')').expect("closed $(");
        out.push_str(env.get(&tail[..end]).map_or("$(?)", String::as_str));
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The command line the binary effectively gets: the container's args, with the flags whose environment
/// variable the container sets added at each level (the top command, then each subcommand named by the
/// args): clap reads those from the environment, the test cannot set the process environment, so it passes
/// them as flags. Returns it, and the env names no level reads.
fn effective_argv(
    command: &clap::Command,
    args: &[String],
    env: &BTreeMap<String, String>,
) -> (Vec<String>, BTreeSet<String>) {
    let mut argv = vec!["saga-tracker-service".to_owned()];
    let mut unread: BTreeSet<String> = env.keys().cloned().collect();
    let mut level = command;
    let mut rest = args;
    loop {
        for arg in level.get_arguments() {
            if let (Some(var), Some(long)) = (arg.get_env(), arg.get_long())
                && let Some(value) = env.get(&*var.to_string_lossy())
            {
                argv.push(format!("--{long}={value}"));
                unread.remove(&*var.to_string_lossy());
            }
        }
        match rest.first().and_then(|a| level.find_subcommand(a)) {
            Some(sub) => {
                argv.push(rest[0].clone());
                level = sub;
                rest = &rest[1..];
            }
            None => break,
        }
    }
    argv.extend(rest.iter().map(|a| expand(a, env)));
    (argv, unread)
}

/// Env variables the chart sets that the secrets helper's flags read (`--api-token-file`,
/// `--metrics-token-file`, issue 20) while this branch does not have them yet: once `Config` declares them,
/// they are checked like every other (and this list can go).
const PENDING_ENV: &[&str] = &["TRACKER_API_TOKEN_FILE", "TRACKER_METRICS_TOKEN_FILE"];

/// Env variables the container sets for something else than the binary's flags.
const NOT_FLAGS: &[&str] = &["POD_NAME", "RUST_LOG", "KAFKA_USER", "KAFKA_PASSWORD"];

#[test]
fn the_tracker_command_line_parses_with_the_service_flags() {
    for ((_, rendered), group, session_ms) in [
        (minimal(), "saga-tracker-service", "30000"),
        (full(), "saga-tracker-prod", "45000"),
    ] {
        let deployment = rendered.one("Deployment", "saga-tracker");
        let container = &deployment.value["spec"]["template"]["spec"]["containers"][0];
        let secrets: Vec<&Object> = rendered.of_kind("Secret").collect();
        let env = env_values(container, &secrets);
        let args: Vec<String> = container["args"]
            .as_sequence()
            .expect("args")
            .iter()
            .map(|a| a.as_str().expect("string arg").to_owned())
            .collect();
        let command = Config::command();
        let (argv, unread) = effective_argv(&command, &args, &env);
        let unexpected: Vec<_> = unread
            .iter()
            .filter(|n| !NOT_FLAGS.contains(&n.as_str()) && !PENDING_ENV.contains(&n.as_str()))
            .collect();
        assert!(
            unexpected.is_empty(),
            "env the service does not read: {unexpected:?}"
        );
        let config = Config::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        config.validate().expect("valid configuration");
        assert_eq!(
            config.listen.to_string(),
            "0.0.0.0:8080",
            "serves the pod's address"
        );
        assert_eq!(
            config.assignment,
            Assignment::Subscribe,
            "one consumer group"
        );
        assert_eq!(config.group_id, group);
        assert_eq!(config.topic, "saga.tracker");
        assert_eq!(config.dlq_topic, "saga.tracker.dlq");
        let props: BTreeMap<&str, &str> = config
            .kafka_properties
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            props.get("group.instance.id"),
            Some(&POD_NAME),
            "static membership by pod name"
        );
        assert_eq!(props.get("session.timeout.ms"), Some(&session_ms));
        if group == "saga-tracker-prod" {
            assert_eq!(config.database_schema.as_deref(), Some("tracker"));
            assert_eq!(config.database_max_connections, 16);
            assert_eq!(props.get("sasl.username"), Some(&"saga-tracker"));
            assert_eq!(props.get("sasl.password"), Some(&"from-an-external-secret"));
            assert_eq!(config.known_schema_versions, [1, 2], "schema.knownVersions");
            let ids = config
                .registry_schema_ids
                .as_ref()
                .expect("schema.registryIds");
            assert_eq!(ids.version_of(17).map(|v| v.version), Some(1));
            assert_eq!(ids.version_of(18).map(|v| v.version), Some(2));
        } else {
            assert!(
                config.known_schema_versions.is_empty(),
                "every version by default"
            );
            assert!(config.registry_schema_ids.is_none());
            assert_eq!(
                config.database_url, "postgres://tracker:change-me@postgres.databases:5432/tracker",
                "from the chart's Secret"
            );
            assert_eq!(
                config.kafka_brokers,
                "kafka-0.kafka:9092,kafka-1.kafka:9092"
            );
        }
    }
    // a large number prints as digits (Helm's float64 values would print 1.8e+06 without `int`)
    let chart = Chart::load();
    let rendered = chart
        .render_layers(&[
            &chart.ci_values("minimal-values.yaml"),
            "kafka: {sessionTimeoutMs: 1800000}",
        ])
        .expect("renders");
    let deployment = rendered.one("Deployment", "saga-tracker");
    let args = serde_yaml_ng::to_string(
        &deployment.value["spec"]["template"]["spec"]["containers"][0]["args"],
    )
    .expect("yaml");
    assert!(
        args.contains("--kafka-property=session.timeout.ms=1800000\n"),
        "{args}"
    );
    // without static membership, no group.instance.id
    let rendered = chart
        .render_layers(&[
            &chart.ci_values("minimal-values.yaml"),
            "kafka: {staticMembership: false}",
        ])
        .expect("renders");
    let deployment = rendered.one("Deployment", "saga-tracker");
    let args = serde_yaml_ng::to_string(
        &deployment.value["spec"]["template"]["spec"]["containers"][0]["args"],
    )
    .expect("yaml");
    assert!(!args.contains("group.instance.id"), "{args}");
}

/// The job containers: (object, container) of every CronJob and Job.
fn job_containers(rendered: &Rendered) -> Vec<(&Object, &Value)> {
    let mut out = Vec::new();
    for o in &rendered.objects {
        let pod = match o.kind() {
            "CronJob" => at(&o.value, "spec.jobTemplate.spec.template.spec"),
            "Job" => at(&o.value, "spec.template.spec"),
            _ => None,
        };
        for c in pod
            .and_then(|p| p["containers"].as_sequence())
            .into_iter()
            .flatten()
        {
            out.push((o, c));
        }
    }
    out
}

#[test]
fn the_jobs_run_the_operations_subcommands() {
    let (_, rendered) = full();
    let mut seen = BTreeMap::new();
    for (o, container) in job_containers(&rendered) {
        let args: Vec<String> = container["args"]
            .as_sequence()
            .expect("args")
            .iter()
            .map(|a| a.as_str().expect("string arg").to_owned())
            .collect();
        seen.insert(o.name().to_owned(), args.join(" "));
    }
    assert_eq!(
        seen,
        BTreeMap::from([
            (
                "saga-tracker-archive".to_owned(),
                "archive --retention-days=30 --ahead-days=7 --archive-url=s3://saga-archive/prod"
                    .to_owned()
            ),
            (
                "saga-tracker-reconcile".to_owned(),
                "reconcile --day=yesterday --format=json".to_owned()
            ),
            (
                "saga-tracker-topics".to_owned(),
                "topics ensure --partitions=24 --replication-factor=3 --retention-days=30 \
                 --timeout-secs=30"
                    .to_owned()
            ),
        ])
    );
    // the defaults: a file archive on a claim when one is named, both jobs daily, after midnight UTC
    let chart = Chart::load();
    let rendered = chart
        .render_layers(&[
            &chart.ci_values("minimal-values.yaml"),
            "archive: {volume: {existingClaim: saga-archive}}",
        ])
        .expect("renders");
    assert_valid(&rendered, &[]);
    let archive = rendered.one("CronJob", "-archive");
    assert_eq!(archive.value["spec"]["schedule"], "30 1 * * *");
    assert_eq!(archive.value["spec"]["timeZone"], "Etc/UTC");
    assert_eq!(archive.value["spec"]["concurrencyPolicy"], "Forbid");
    let pod = &archive.value["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(
        pod["containers"][0]["args"],
        yaml(
            "[archive, --retention-days=90, --ahead-days=7, '--archive-url=file:///var/lib/saga-tracker/archive']",
            "expected"
        )
    );
    assert_eq!(
        pod["containers"][0]["volumeMounts"][1]["mountPath"],
        "/var/lib/saga-tracker/archive"
    );
    assert_eq!(
        pod["volumes"][1]["persistentVolumeClaim"]["claimName"],
        "saga-archive"
    );
    assert_eq!(
        rendered.one("CronJob", "-reconcile").value["spec"]["schedule"],
        "30 2 * * *"
    );
    let disabled = chart
        .render_layers(&[
            &chart.ci_values("minimal-values.yaml"),
            "archive: {enabled: false}\nreconcile: {enabled: false}",
        ])
        .expect("renders");
    assert_eq!(disabled.of_kind("CronJob").count(), 0);
}

#[test]
fn values_used_and_defined_agree_and_are_documented() {
    let chart = Chart::load();
    let used = chart.used_values();
    let mut defined = Vec::new();
    key_paths(&chart.values, "", &mut defined);
    let defined_paths: BTreeSet<&str> = defined.iter().map(|(p, _)| p.as_str()).collect();
    let missing: Vec<_> = used
        .iter()
        .filter(|p| !defined_paths.contains(p.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "templates use values missing in values.yaml: {missing:?}"
    );
    let covered = |path: &str| {
        used.iter()
            .any(|u| path == u || path.starts_with(&format!("{u}.")))
    };
    let unused: Vec<_> = defined
        .iter()
        .filter(|(p, leaf)| *leaf && !covered(p))
        .map(|(p, _)| p)
        .collect();
    assert!(
        unused.is_empty(),
        "values.yaml holds values no template uses: {unused:?}"
    );

    // documentation: a comment right above every value a template reads and every map leading to one
    let lines = documented_keys(&chart.values_text);
    let scanned: BTreeSet<&str> = lines.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        scanned, defined_paths,
        "the line scan of values.yaml sees every key"
    );
    let undocumented: Vec<_> = lines
        .iter()
        .filter(|(path, commented)| {
            let read = used
                .iter()
                .any(|u| u == path || u.starts_with(&format!("{path}.")));
            read && !commented
        })
        .map(|(p, _)| p)
        .collect();
    assert!(
        undocumented.is_empty(),
        "values without a comment line above: {undocumented:?}"
    );
    // the scan itself: a key without comment is seen as such
    assert_eq!(
        documented_keys("# a\na:\n  b: 1\n  # c\n  c:\n    - x\nd: 2\n"),
        [
            ("a".to_owned(), true),
            ("a.b".to_owned(), false),
            ("a.c".to_owned(), true),
            ("d".to_owned(), false)
        ]
    );
}

fn repo_file(path: &str) -> String {
    let full = format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

#[test]
fn the_dashboard_and_alerts_are_the_deploy_files() {
    for (copy, source) in [
        (
            "deploy/helm/saga-tracker/files/saga-tracker.json",
            "deploy/grafana/saga-tracker.json",
        ),
        (
            "deploy/helm/saga-tracker/files/alerts.yml",
            "deploy/prometheus/alerts.yml",
        ),
    ] {
        assert!(
            repo_file(copy) == repo_file(source),
            "{copy} differs from {source}: run `cp {source} {copy}`"
        );
    }
    let (_, rendered) = full();
    let dashboard = rendered.one("ConfigMap", "-dashboard");
    assert_eq!(
        dashboard.value["metadata"]["labels"]["grafana_dashboard"], "1",
        "the sidecar's label, a string"
    );
    assert_eq!(
        dashboard.value["metadata"]["annotations"]["grafana_folder"],
        "Sagas"
    );
    assert_eq!(
        dashboard.value["data"]["saga-tracker.json"].as_str(),
        Some(repo_file("deploy/grafana/saga-tracker.json").as_str()),
        "the ConfigMap holds the dashboard byte for byte"
    );
    let alerts = rendered.one("ConfigMap", "-alerts");
    assert_eq!(
        alerts.value["data"]["saga-tracker-alerts.yml"].as_str(),
        Some(repo_file("deploy/prometheus/alerts.yml").as_str())
    );
    let rules = rendered.one("PrometheusRule", "saga-tracker");
    assert_eq!(
        rules.value["spec"],
        yaml(&repo_file("deploy/prometheus/alerts.yml"), "alerts.yml"),
        "the PrometheusRule holds the same rules"
    );
    assert_eq!(
        rules.value["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
}

#[test]
fn the_checks_report_broken_objects() {
    let (_, rendered) = minimal();
    let mut objects = rendered.objects.clone();
    let deployment = objects
        .iter_mut()
        .find(|o| o.kind() == "Deployment")
        .expect("deployment");
    let pod = &mut deployment.value["spec"]["template"]["spec"];
    pod["containers"][0]["env"][1]["valueFrom"]["secretKeyRef"]["key"] = "missing-key".into();
    pod["containers"][0]["env"]
        .as_sequence_mut()
        .expect("env")
        .push(yaml("{name: PORT, value: 8080}", "env"));
    pod["containers"][0]["readinessProbe"]["httpGet"]["port"] = "metrics".into();
    pod["containers"][0]["args"]
        .as_sequence_mut()
        .expect("args")
        .push("--x=$(UNDEFINED)".into());
    pod["containers"][0]["livenessProbes"] = yaml("{}", "typo");
    deployment.value["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] =
        "other".into();
    let cron = objects
        .iter_mut()
        .find(|o| o.kind() == "CronJob")
        .expect("cronjob");
    cron.value["spec"]["schedule"] = "every day".into();
    let problems = check(
        &objects,
        &Known {
            external_secrets: &[],
        },
    )
    .join("\n");
    for wanted in [
        "has no key missing-key",
        "env PORT: value must be a string",
        "readinessProbe.httpGet.port is not a named port",
        "uses $(UNDEFINED)",
        "unknown field `livenessProbes`",
        "do not select the pod template's labels",
        "spec.selector selects the pods of 0 Deployments",
        "spec.schedule is not a cron schedule",
    ] {
        assert!(
            problems.contains(wanted),
            "not reported: {wanted}\n{problems}"
        );
    }
}

#[test]
fn values_that_yaml_1_1_reads_otherwise_are_refused() {
    for line in ["  enabled: on", "- yes", "    mode: 0644", "x: N"] {
        assert!(yaml11_ambiguous(line), "{line}");
    }
    for line in [
        "  enabled: true",
        "- \"yes\"",
        "    mode: 420",
        "x: 0",
        "name: only",
    ] {
        assert!(!yaml11_ambiguous(line), "{line}");
    }
    let chart = Chart::load();
    let err = chart
        .render_layers(&[
            &chart.ci_values("minimal-values.yaml"),
            "podAnnotations: {team: yes}",
        ])
        .err()
        .expect("an unquoted yes in the output");
    assert!(err.contains("YAML 1.1"), "{err}");
}

#[test]
fn the_image_fits_the_chart() {
    let dockerfile = repo_file("deploy/docker/Dockerfile");
    let chart = Chart::load();
    let user = chart.values["podSecurityContext"]["runAsUser"]
        .as_u64()
        .expect("runAsUser");
    assert!(
        dockerfile.contains(&format!("\nUSER {user}:{user}\n")),
        "the image's numeric user is the chart's runAsUser {user}"
    );
    assert!(dockerfile.contains("\nENTRYPOINT [\"saga-tracker-service\"]\n"));
    assert!(
        dockerfile
            .contains("cargo build --release --locked -p saga-tracker-service -p saga-tracker-cli"),
        "locked release build of both packages"
    );
    // the binaries it copies are the packages' binaries
    assert!(
        repo_file("tracker/Cargo.toml")
            .contains("name = \"saga-tracker-service\"\npath = \"src/main.rs\"")
    );
    assert!(repo_file("cli/Cargo.toml").contains("[[bin]]\nname = \"saga-tracker\"\n"));
    for binary in ["saga-tracker-service", "saga-tracker"] {
        assert!(
            dockerfile.contains(&format!("target/release/{binary} /out/{binary}")),
            "{binary}"
        );
    }
    // the archive mount point of the chart exists in the image, owned by the user
    assert!(dockerfile.contains(&format!(
        "install -d -o {user} -g {user} /var/lib/saga-tracker/archive"
    )));
}

#[test]
fn the_effective_command_line_puts_env_flags_at_their_level() {
    let command = clap::Command::new("saga-tracker-service")
        .arg(
            clap::Arg::new("db")
                .long("database-url")
                .env("DATABASE_URL"),
        )
        .subcommand(
            clap::Command::new("topics").subcommand(
                clap::Command::new("ensure").arg(
                    clap::Arg::new("brokers")
                        .long("kafka-brokers")
                        .env("KAFKA_BROKERS"),
                ),
            ),
        );
    let env = BTreeMap::from([
        ("DATABASE_URL".to_owned(), "postgres://db".to_owned()),
        ("KAFKA_BROKERS".to_owned(), "k:9092".to_owned()),
        ("POD_NAME".to_owned(), "pod-1".to_owned()),
    ]);
    let args = ["topics", "ensure", "--x=$(POD_NAME)"].map(str::to_owned);
    let (argv, unread) = effective_argv(&command, &args, &env);
    assert_eq!(
        argv,
        [
            "saga-tracker-service",
            "--database-url=postgres://db",
            "topics",
            "ensure",
            "--kafka-brokers=k:9092",
            "--x=pod-1"
        ]
    );
    assert_eq!(unread, BTreeSet::from(["POD_NAME".to_owned()]));
}

/// Runs the real binary with a job's command line and environment (the database and the brokers pointed
/// at closed local ports): its flag parser must accept the command line (no clap error, which ends with
/// "For more information, try '--help'"); what happens next (no database, no broker) does not matter. Returns the binary's stderr, or None when it still runs after
/// a few seconds (it got past parsing), after stopping it.
fn run_job_command(args: &[String], env: &BTreeMap<String, String>) -> Option<String> {
    // the image's archive directory, somewhere harmless on this machine
    let archive_dir =
        std::env::temp_dir().join(format!("saga-tracker-chart-{}", std::process::id()));
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_saga-tracker-service"));
    command
        .args(args.iter().map(|a| {
            expand(a, env).replace(
                "/var/lib/saga-tracker/archive",
                &archive_dir.to_string_lossy(),
            )
        }))
        .env_clear()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        let v = match k.as_str() {
            "DATABASE_URL" => "postgres://postgres@127.0.0.1:1/none",
            "KAFKA_BROKERS" => "127.0.0.1:1",
            "TRACKER_OUTBOX_DATABASE_URLS" => "postgres://postgres@127.0.0.1:1/outbox",
            _ => v.as_str(),
        };
        command.env(k, v);
    }
    let mut child = command.spawn().expect("the binary runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if child.try_wait().expect("wait").is_some() {
            let out = child.wait_with_output().expect("output");
            let _ = std::fs::remove_dir_all(&archive_dir);
            return Some(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().expect("kill");
    child.wait().expect("reaped");
    let _ = std::fs::remove_dir_all(&archive_dir);
    None
}

/// How clap ends a refused command line.
const CLAP_ERROR: &str = "For more information, try '--help'";

#[test]
fn the_binary_accepts_the_jobs_command_lines() {
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_saga-tracker-service"))
        .arg("--help")
        .output()
        .expect("--help runs");
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let chart = Chart::load();
    let mut jobs = Vec::new();
    for rendered in [
        full().1,
        chart
            .render_layers(&[
                &chart.ci_values("minimal-values.yaml"),
                "archive: {volume: {existingClaim: saga-archive}}",
            ])
            .expect("renders"),
    ] {
        let secrets: Vec<&Object> = rendered.of_kind("Secret").collect();
        for (o, container) in job_containers(&rendered) {
            let args: Vec<String> = container["args"]
                .as_sequence()
                .expect("args")
                .iter()
                .map(|a| a.as_str().expect("string arg").to_owned())
                .collect();
            // The operations subcommands come with the operations work (issue 18); until the binary lists
            // one under --help, its job cannot be checked here.
            if !help.contains(&format!("\n  {} ", args[0])) {
                eprintln!(
                    "{}: the binary has no `{}` operation yet, not checked",
                    o.name(),
                    args[0]
                );
                continue;
            }
            jobs.push((o.name().to_owned(), args, env_values(container, &secrets)));
        }
    }
    // in parallel: each may wait for its connection until stopped
    std::thread::scope(|scope| {
        let runs: Vec<_> = jobs
            .iter()
            .map(|(name, args, env)| (name, args, scope.spawn(|| run_job_command(args, env))))
            .collect();
        for (name, args, run) in runs {
            if let Some(stderr) = run.join().expect("joined") {
                assert!(
                    !stderr.contains(CLAP_ERROR),
                    "{name}: the binary refuses {args:?}:\n{stderr}"
                );
            }
        }
    });
    eprintln!("{} job command lines accepted by the binary", jobs.len());
    // and a command line it does not know is refused the way the check looks for
    let refused = run_job_command(
        &["--no-such-flag".to_owned()],
        &BTreeMap::from([("DATABASE_URL".to_owned(), "x".to_owned())]),
    )
    .expect("exits at once");
    assert!(refused.contains(CLAP_ERROR), "{refused}");
}
