//! The closed-loop scenario `charge-stopped-by-agent`, played in-process and read and
//! written over real Modbus TCP: only a client writing the BMS's charge coil stops the
//! charge, and the room follows what the client did.

mod support;

use std::time::Duration;

use hardware_sim::{play, PlayEvent, PlayOptions, Scenario};
use support::{connect, eventually, shipped};
use tokio_modbus::prelude::*;

/// Generous: a loaded 2-core CI machine is slow, and waiting costs nothing when it is not.
const DEADLINE: Duration = Duration::from_secs(30);

/// The scenario without its smoke detector (MQTT: no broker here).
fn scenario() -> Scenario {
    let mut s = Scenario::from_file(shipped("charge-stopped-by-agent.toml")).unwrap();
    s.devices.retain(|d| d.mqtt.is_none());
    s
}

async fn offgas(env: &mut tokio_modbus::client::Context) -> u16 {
    env.read_holding_registers(10, 1).await.unwrap().unwrap()[0]
}

/// The BMS's cell temperature (input 22-23, f32 low word first).
async fn cell(bms: &mut tokio_modbus::client::Context) -> f32 {
    let w = bms.read_input_registers(22, 2).await.unwrap().unwrap();
    f32::from_bits((u32::from(w[1]) << 16) | u32::from(w[0]))
}

#[tokio::test]
async fn a_client_that_stops_the_charge_at_the_alarm_prevents_the_runaway_and_resuming_charges_again(
) {
    let s = scenario();
    assert!(s.is_closed_loop());
    let mut handle = play(
        s,
        PlayOptions {
            speed: 60.0,
            host: None,
        },
    )
    .await
    .unwrap();
    let mut events = handle.take_events().unwrap();
    let mut env = connect(handle.addr("env-b3").unwrap(), 1).await;
    let mut bms = connect(handle.addr("bms-b3").unwrap(), 1).await;
    assert_eq!(handle.charging(), Some(true));
    assert_eq!(bms.read_coils(12, 1).await.unwrap(), Ok(vec![true]));
    assert_eq!(
        bms.read_discrete_inputs(12, 1).await.unwrap(),
        Ok(vec![true])
    );

    // The off-gas alarm (20 ppm) comes at ~3 min: stop the charge then.
    eventually("off-gas past 20 ppm", DEADLINE, async || {
        (offgas(&mut env).await >= 20).then_some(())
    })
    .await;
    assert_eq!(bms.write_single_coil(12, false).await.unwrap(), Ok(()));
    // The state input shows it at once: a verify read right after the write sees it.
    assert_eq!(
        bms.read_discrete_inputs(12, 1).await.unwrap(),
        Ok(vec![false])
    );
    assert_eq!(bms.read_coils(12, 1).await.unwrap(), Ok(vec![false]));
    assert_eq!(handle.charging(), Some(false));
    let commands = handle.charge_commands();
    assert_eq!(commands.len(), 1);
    let stopped_at = commands[0].0;
    assert!(
        stopped_at >= Duration::from_secs(170) && stopped_at < Duration::from_secs(200),
        "{stopped_at:?}"
    );
    let peak = offgas(&mut env).await;

    // Well past the runaway the file plans for (7 min): the vapour has decayed, the cells
    // are flat, both UPS units answer.
    eventually("sim time 8 min", DEADLINE, async || {
        (handle.sim_time() >= Duration::from_secs(480)).then_some(())
    })
    .await;
    let decayed = offgas(&mut env).await;
    assert!(decayed < peak / 2, "{peak} -> {decayed} ppm");
    assert!(cell(&mut bms).await < 30.0);
    let mut ups = connect(handle.addr("ups-b3-1").unwrap(), 1).await;
    assert!(ups.read_holding_registers(0, 2).await.unwrap().is_ok());

    // Resumed: charging again, the vapour rises again, and with the charge left running
    // the runaway comes after all (160 s of charge were left before the point of no
    // return, ~11m40s).
    assert_eq!(bms.write_single_coil(12, true).await.unwrap(), Ok(()));
    assert_eq!(
        bms.read_discrete_inputs(12, 1).await.unwrap(),
        Ok(vec![true])
    );
    assert_eq!(handle.charging(), Some(true));
    eventually("the vapour rising again", DEADLINE, async || {
        (offgas(&mut env).await > decayed + 5).then_some(())
    })
    .await;
    eventually("the cells running away", DEADLINE, async || {
        (cell(&mut bms).await > 100.0).then_some(())
    })
    .await;
    let resumed_at = handle.charge_commands()[1].0;
    assert!(handle.sim_time() > resumed_at + Duration::from_secs(150));

    let mut charge_events = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let PlayEvent::Charge {
            charging, device, ..
        } = e
        {
            charge_events.push((device, charging));
        }
    }
    assert_eq!(
        charge_events,
        [("bms-b3".to_string(), false), ("bms-b3".to_string(), true)]
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn nobody_stopping_the_charge_is_a_runaway_that_takes_the_ups_units() {
    let handle = play(
        scenario(),
        PlayOptions {
            speed: 120.0,
            host: None,
        },
    )
    .await
    .unwrap();
    let ups = handle.addr("ups-b3-1").unwrap();
    // Lost 3 min after the runaway at 7 min: the device stops answering.
    eventually("ups-b3-1 lost with the room", DEADLINE, async || {
        (handle.sim_time() >= Duration::from_secs(605)).then_some(())
    })
    .await;
    let mut ctx = connect(ups, 1).await;
    let answer =
        tokio::time::timeout(Duration::from_millis(300), ctx.read_holding_registers(0, 2)).await;
    assert!(answer.is_err(), "a lost UPS says nothing: {answer:?}");
    assert!(handle.charge_commands().is_empty());
    handle.shutdown().await;
}
