//! `MachineNetns` against a recording double: no root, no `ip`.

use std::path::Path;
use std::sync::Mutex;

use super::*;

/// Records every call; answers from the fields.
#[derive(Debug)]
struct Recording {
    presence: Presence,
    occupants: Vec<u32>,
    fail_add: bool,
    calls: Mutex<Vec<String>>,
}

impl Recording {
    fn with(presence: Presence) -> Self {
        Self {
            presence,
            occupants: Vec::new(),
            fail_add: false,
            calls: Mutex::new(Vec::new()),
        }
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn record(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }
}

impl NetnsControl for Recording {
    fn presence(&self, path: &Path) -> Presence {
        self.record(format!("presence {}", path.display()));
        self.presence
    }
    fn remove_stale(&self, path: &Path) -> Result<(), String> {
        self.record(format!("remove_stale {}", path.display()));
        Ok(())
    }
    fn add(&self, name: &str) -> Result<(), String> {
        self.record(format!("add {name}"));
        if self.fail_add {
            Err("`ip netns add` failed: Operation not permitted".to_owned())
        } else {
            Ok(())
        }
    }
    fn loopback_up(&self, name: &str) -> Result<(), String> {
        self.record(format!("lo_up {name}"));
        Ok(())
    }
    fn occupants(&self, path: &Path) -> Vec<u32> {
        self.record(format!("occupants {}", path.display()));
        self.occupants.clone()
    }
    fn delete(&self, name: &str) -> Result<(), String> {
        self.record(format!("delete {name}"));
        Ok(())
    }
}

#[test]
fn missing_namespace_is_created_then_loopback_brought_up() {
    let netns = MachineNetns::new("be-a", Recording::with(Presence::Missing));
    netns.ensure().unwrap();
    assert_eq!(
        netns.control.calls(),
        [
            "presence /var/run/netns/berth-be-a",
            "add berth-be-a",
            "lo_up berth-be-a"
        ]
    );
}

#[test]
fn existing_namespace_is_kept_and_loopback_brought_up_again() {
    let netns = MachineNetns::new("be-a", Recording::with(Presence::Mounted));
    netns.ensure().unwrap();
    assert_eq!(
        netns.control.calls(),
        ["presence /var/run/netns/berth-be-a", "lo_up berth-be-a"]
    );
}

#[test]
fn stale_namespace_file_is_replaced() {
    let netns = MachineNetns::new("be-a", Recording::with(Presence::Stale));
    netns.ensure().unwrap();
    assert_eq!(
        netns.control.calls(),
        [
            "presence /var/run/netns/berth-be-a",
            "remove_stale /var/run/netns/berth-be-a",
            "add berth-be-a",
            "lo_up berth-be-a"
        ]
    );
}

#[test]
fn failed_creation_names_machine_and_namespace() {
    let mut control = Recording::with(Presence::Missing);
    control.fail_add = true;
    let netns = MachineNetns::new("be-a", control);
    let message = netns.ensure().unwrap_err().to_string();
    assert!(message.contains("\"be-a\""), "{message}");
    assert!(message.contains("berth-be-a"), "{message}");
    assert!(message.contains("Operation not permitted"), "{message}");
    assert!(!netns.control.calls().iter().any(|c| c.starts_with("lo_up")));
}

#[test]
fn teardown_deletes_an_empty_namespace() {
    let netns = MachineNetns::new("be-a", Recording::with(Presence::Mounted));
    assert_eq!(netns.teardown().unwrap(), Teardown::Removed);
    assert!(netns
        .control
        .calls()
        .contains(&"delete berth-be-a".to_owned()));
}

#[test]
fn teardown_keeps_a_namespace_with_processes_inside() {
    let mut control = Recording::with(Presence::Mounted);
    control.occupants = vec![42];
    let netns = MachineNetns::new("be-a", control);
    assert_eq!(
        netns.teardown().unwrap(),
        Teardown::Kept {
            occupants: vec![42]
        }
    );
    assert!(!netns
        .control
        .calls()
        .iter()
        .any(|c| c.starts_with("delete")));
}

#[test]
fn teardown_of_a_missing_namespace_does_nothing() {
    let netns = MachineNetns::new("be-a", Recording::with(Presence::Missing));
    assert_eq!(netns.teardown().unwrap(), Teardown::Absent);
    assert_eq!(netns.control.calls().len(), 1);
}
