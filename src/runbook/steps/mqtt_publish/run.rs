//! The `mqtt_publish` step: one message through a configured MQTT source's broker.
//! Its own short-lived connection (a client id of its own, so the source's subscription is
//! not kicked off); QoS 1 waits for the broker's PUBACK.

use super::MqttPublishStep;
use crate::config::{MqttSource, SourceSpec, Step};
use crate::runbook::{StepContext, StepError, StepOutcome, TemplateVars};
use rumqttc::{AsyncClient, Event, Outgoing, Packet, QoS};
use std::time::Duration;

pub async fn run(
    step: &MqttPublishStep,
    source: &MqttSource,
    vars: &TemplateVars,
    timeout: Duration,
    dry_run: bool,
) -> Result<StepOutcome, StepError> {
    let topic = vars.render(&step.topic);
    let payload = vars.render(&step.payload);
    // The source's own options (credentials, TLS), under a client id of our own.
    let mut opts = crate::sources::mqtt::options("mqtt_publish", source)
        .map_err(|e| StepError::Mqtt(e.to_string()))?;
    opts.set_client_id(format!(
        "{}-publish-{}",
        source.client_id,
        std::process::id()
    ));
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut events) = AsyncClient::new(opts, 10);
    let qos = match step.qos {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    };
    let broker = format!("{}:{}", source.host, source.port);
    let work = async {
        let mut published = false;
        loop {
            let ev = events
                .poll()
                .await
                .map_err(|e| StepError::Mqtt(format!("broker {broker}: {e}")))?;
            match ev {
                Event::Incoming(Packet::ConnAck(_)) => {
                    if dry_run {
                        return Ok::<bool, StepError>(false);
                    }
                    client
                        .publish(
                            topic.clone(),
                            qos,
                            step.retain,
                            payload.clone().into_bytes(),
                        )
                        .await
                        .map_err(|e| StepError::Mqtt(e.to_string()))?;
                }
                // QoS 0 has no acknowledgement: written to the broker connection is all we can know.
                Event::Outgoing(Outgoing::Publish(_)) if qos == QoS::AtMostOnce => published = true,
                Event::Incoming(Packet::PubAck(_)) | Event::Incoming(Packet::PubComp(_)) => {
                    return Ok(true)
                }
                _ => {}
            }
            if published {
                return Ok(true);
            }
        }
    };
    let acked = tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| StepError::Timeout(timeout))??;
    let _ = client.disconnect().await;
    // Let the DISCONNECT reach the broker; bounded.
    let _ = tokio::time::timeout(Duration::from_millis(200), events.poll()).await;
    Ok(if dry_run {
        StepOutcome {
            verified: false,
            detail: format!("dry run: broker {broker} accepts us; would publish to {topic}"),
        }
    } else {
        StepOutcome {
            verified: acked,
            detail: format!(
                "published to {topic} (qos {}, retain {}){}",
                step.qos,
                step.retain,
                if acked { ", acknowledged" } else { "" }
            ),
        }
    })
}

/// The step engine's entry: publishes through the step's source's broker.
pub async fn execute(
    m: &MqttPublishStep,
    step: &Step,
    ctx: &StepContext<'_>,
) -> Result<StepOutcome, StepError> {
    match &ctx.config.sources[m.source].spec {
        SourceSpec::Mqtt(src) => run(m, src, ctx.vars, step.timeout, ctx.dry_run).await,
        // Validation accepts only an MQTT source here.
        _ => Err(StepError::Mqtt(
            "the step's source is not an MQTT source".into(),
        )),
    }
}
