//! `METHOD PATH?QUERY` through version splitting, path cleaning, classification and the endpoint rules.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    berth_policy::fuzzing::request_path(data);
});
