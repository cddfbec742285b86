//! A worker's event stream: parsing never panics, and however the bytes are split into chunks
//! (the network splits them anywhere), the same events come out.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_protocol::SseParser;

fuzz_target!(|data: &[u8]| {
    let Some((&step, stream)) = data.split_first() else {
        return;
    };
    let mut whole = Vec::new();
    let mut parser = SseParser::new();
    parser.feed(stream, &mut whole);
    parser.finish(&mut whole);

    let step = usize::from(step % 16) + 1;
    let mut split = Vec::new();
    let mut parser = SseParser::new();
    for chunk in stream.chunks(step) {
        parser.feed(chunk, &mut split);
    }
    parser.finish(&mut split);
    assert_eq!(whole, split, "chunks of {step} bytes parse differently");
});
