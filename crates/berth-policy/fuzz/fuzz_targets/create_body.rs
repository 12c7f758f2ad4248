//! Any bytes as the JSON body of container create/update, exec create and volume create, judged by the strict example policy.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    berth_policy::fuzzing::create_body(data);
});
