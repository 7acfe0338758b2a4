//! Any bytes as an uploaded photo: a clear error or an image, never a panic or a huge
//! allocation (the pixel limit is kept small so bombs are cheap to find).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(image) = facegate_image::decode(data, "fuzz", 4_000_000) {
        assert!(u64::from(image.rgb.width()) * u64::from(image.rgb.height()) <= 4_000_000);
    }
});
