//! `topics ensure`: creates `saga.tracker` and its DLQ with the retention policy of R7 (`retention.ms` 30 days,
//! `cleanup.policy=delete`) through the Kafka admin API. On a topic that exists, it reports every drift from
//! that policy (partition count, the two configs) and changes nothing unless `--apply` is given; with
//! `--apply` it sets the configs (keeping the topic's other overrides: the admin API's AlterConfigs resets
//! what it is not given) and adds partitions (Kafka cannot remove any: fewer is only reported).

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewPartitions, NewTopic,
    ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use serde::Serialize;

use super::OpsError;

const DAY_MS: u64 = 86_400_000;

/// The policy.
#[derive(Debug, Clone)]
pub struct TopicsOptions {
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// Extra librdkafka properties.
    pub kafka_properties: Vec<(String, String)>,
    /// The event topic and its partition count.
    pub topic: (String, i32),
    /// The DLQ topic and its partition count.
    pub dlq_topic: (String, i32),
    /// Replication factor of new topics (-1: the broker's default).
    pub replication_factor: i32,
    /// `retention.ms` in days.
    pub retention_days: u32,
    /// Change existing topics to the policy.
    pub apply: bool,
    /// How long to wait for each admin request.
    pub timeout: Duration,
}

/// A difference between a topic and the policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    /// `partitions`, `retention.ms`, `cleanup.policy`.
    pub setting: String,
    /// The policy's value.
    pub expected: String,
    /// The topic's value (`unknown` when the broker did not say).
    pub actual: String,
    /// Whether `--apply` changed it.
    pub applied: bool,
}

/// One topic's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicReport {
    /// The topic.
    pub topic: String,
    /// True when this run created it.
    pub created: bool,
    /// Differences from the policy (empty: as it should be).
    pub drift: Vec<Drift>,
}

fn admin(options: &TopicsOptions) -> Result<AdminClient<DefaultClientContext>, OpsError> {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &options.brokers);
    for (k, v) in &options.kafka_properties {
        cc.set(k, v);
    }
    Ok(cc.create()?)
}

/// Runs `topics ensure`.
pub async fn ensure(options: &TopicsOptions) -> Result<Vec<TopicReport>, OpsError> {
    if options.topic.1 < 1 || options.dlq_topic.1 < 1 {
        return Err(OpsError::Input("--partitions must be at least 1".into()));
    }
    let admin = admin(options)?;
    let retention = (u64::from(options.retention_days) * DAY_MS).to_string();
    let mut out = Vec::new();
    for (name, partitions) in [&options.topic, &options.dlq_topic] {
        // all topics: asking for one by name may auto-create it on brokers that allow that
        let existing = tokio::task::block_in_place(|| {
            let metadata = admin.inner().fetch_metadata(None, options.timeout)?;
            Ok::<_, OpsError>(
                metadata
                    .topics()
                    .iter()
                    .find(|t| t.name() == name && t.error().is_none())
                    .map(|t| t.partitions().len()),
            )
        })?;
        match existing {
            None | Some(0) => {
                let new = NewTopic::new(
                    name,
                    *partitions,
                    TopicReplication::Fixed(options.replication_factor),
                )
                .set("retention.ms", &retention)
                .set("cleanup.policy", "delete");
                let opts = AdminOptions::new()
                    .operation_timeout(Some(options.timeout))
                    .request_timeout(Some(options.timeout));
                let results = admin
                    .create_topics([&new], &opts)
                    .await
                    .map_err(|e| OpsError::Kafka(format!("cannot create topic `{name}`: {e}")))?;
                for r in results {
                    r.map_err(|(t, code)| {
                        OpsError::Kafka(format!("cannot create topic `{t}`: {code:?}"))
                    })?;
                }
                out.push(TopicReport {
                    topic: name.clone(),
                    created: true,
                    drift: Vec::new(),
                });
            }
            Some(have) => {
                out.push(drift(&admin, options, name, *partitions, have, &retention).await?);
            }
        }
    }
    Ok(out)
}

async fn drift(
    admin: &AdminClient<DefaultClientContext>,
    options: &TopicsOptions,
    name: &str,
    partitions: i32,
    have: usize,
    retention: &str,
) -> Result<TopicReport, OpsError> {
    let mut report = TopicReport {
        topic: name.to_owned(),
        created: false,
        drift: Vec::new(),
    };
    let want = usize::try_from(partitions).unwrap_or(0);
    if have != want {
        let mut d = Drift {
            setting: "partitions".into(),
            expected: want.to_string(),
            actual: have.to_string(),
            applied: false,
        };
        if options.apply && have < want {
            let opts = AdminOptions::new()
                .operation_timeout(Some(options.timeout))
                .request_timeout(Some(options.timeout));
            let results = admin
                .create_partitions([&NewPartitions::new(name, want)], &opts)
                .await
                .map_err(|e| OpsError::Kafka(format!("cannot add partitions to `{name}`: {e}")))?;
            for r in results {
                r.map_err(|(t, code)| {
                    OpsError::Kafka(format!("cannot add partitions to `{t}`: {code:?}"))
                })?;
            }
            d.applied = true;
        }
        report.drift.push(d);
    }
    let opts = AdminOptions::new().request_timeout(Some(options.timeout));
    let described = admin
        .describe_configs([&ResourceSpecifier::Topic(name)], &opts)
        .await
        .map_err(|e| e.to_string())
        .and_then(|mut v| {
            v.pop()
                .ok_or_else(|| "no answer".to_owned())?
                .map_err(|code| format!("{code:?}"))
        });
    let wanted = [("retention.ms", retention), ("cleanup.policy", "delete")];
    let resource = match described {
        Ok(resource) => resource,
        Err(why) => {
            for (key, value) in wanted {
                report.drift.push(Drift {
                    setting: key.into(),
                    expected: value.into(),
                    actual: format!(
                        "unknown (the broker did not describe the topic's configs: {why})"
                    ),
                    applied: false,
                });
            }
            return Ok(report);
        }
    };
    let mut differs = Vec::new();
    for (key, value) in wanted {
        let actual = resource.get(key).and_then(|e| e.value.clone());
        if actual.as_deref() != Some(value) {
            differs.push(report.drift.len());
            report.drift.push(Drift {
                setting: key.into(),
                expected: value.into(),
                actual: actual.unwrap_or_else(|| "unset".into()),
                applied: false,
            });
        }
    }
    if options.apply && !differs.is_empty() {
        // AlterConfigs replaces the topic's whole override set: keep the others
        let keep: Vec<(String, String)> = resource
            .entries
            .iter()
            .filter(|e| matches!(e.source, ConfigSource::DynamicTopic) && !e.is_read_only)
            .filter(|e| !wanted.iter().any(|(k, _)| *k == e.name))
            .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
            .collect();
        let mut alter = AlterConfig::new(ResourceSpecifier::Topic(name));
        for (k, v) in &keep {
            alter = alter.set(k, v);
        }
        for (k, v) in wanted {
            alter = alter.set(k, v);
        }
        let opts = AdminOptions::new().request_timeout(Some(options.timeout));
        let results = admin
            .alter_configs([&alter], &opts)
            .await
            .map_err(|e| OpsError::Kafka(format!("cannot alter `{name}`: {e}")))?;
        for r in results {
            r.map_err(|(_, code)| OpsError::Kafka(format!("cannot alter `{name}`: {code:?}")))?;
        }
        for i in differs {
            report.drift[i].applied = true;
        }
    }
    Ok(report)
}
