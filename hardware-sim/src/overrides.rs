//! Values and faults set from outside a scenario's timeline (the control API).

use crate::timeline::Fault;

/// Values and faults set from outside (the control API), per (device, signal); they win
/// over the timeline until cleared.
#[derive(Debug, Default)]
pub struct Overrides {
    map: std::sync::Mutex<std::collections::HashMap<(String, String), Override>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Override {
    pub value: Option<f64>,
    pub fault: Option<Fault>,
}

impl Overrides {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<(String, String), Override>> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn get(&self, device: &str, signal: &str) -> Override {
        let map = self.lock();
        if map.is_empty() {
            // The usual case: no allocation for the key on every tick of every register.
            return Override::default();
        }
        map.get(&(device.to_string(), signal.to_string()))
            .copied()
            .unwrap_or_default()
    }

    pub(crate) fn update(&self, device: &str, signal: &str, f: impl FnOnce(&mut Override)) {
        let mut map = self.lock();
        let key = (device.to_string(), signal.to_string());
        let entry = map.entry(key.clone()).or_default();
        f(entry);
        if *entry == Override::default() {
            map.remove(&key);
        }
    }
}
