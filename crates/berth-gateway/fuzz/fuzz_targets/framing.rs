//! A client connection's bytes, read as requests by berth's framing and by hyper's
//! server: both must find the same requests and bodies (berth_gateway::framing::fuzzing).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    berth_gateway::framing::fuzzing::requests(data);
});
