//! Any text as a policy file.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    berth_policy::fuzzing::policy_toml(data);
});
