//! Any bytes as a stored template row (embedding blob, dimension, quality JSON) of a SQLite
//! gallery, plain and encrypted, read back through every path that decodes templates: a clear
//! error or the template, never a panic; an encrypted template never opens to anything but
//! what was sealed.
#![no_main]

use std::sync::{Arc, Mutex, OnceLock};

use facegate_gallery::{Gallery, NewTemplate, SqliteGallery, TemplateIndex, TemplateKey};
use libfuzzer_sys::fuzz_target;

const ORIGINAL: [f32; 4] = [0.5, -0.5, 0.5, -0.5];

struct Fixture {
    plain: SqliteGallery,
    sealed: SqliteGallery,
    plain_db: Mutex<rusqlite::Connection>,
    sealed_db: Mutex<rusqlite::Connection>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("facegate-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        let key = TemplateKey::from_hex(&TemplateKey::generate_hex().expect("key")).expect("key");
        let template = NewTemplate {
            embedding: ORIGINAL.to_vec(),
            image_sha256: "sha".into(),
            bbox: [0.0, 0.0, 1.0, 1.0],
            detector_score: 1.0,
            source: "fuzz".into(),
            quality: None,
        };
        let open = |name: &str, key: Option<Arc<TemplateKey>>| {
            let path = dir.join(name);
            let _ = std::fs::remove_file(&path);
            let gallery = SqliteGallery::open(&path).expect("gallery").with_key(key);
            gallery
                .enroll("p", "m", std::slice::from_ref(&template))
                .expect("enroll");
            let raw = rusqlite::Connection::open(&path).expect("raw connection");
            (gallery, Mutex::new(raw))
        };
        let (plain, plain_db) = open("plain.db", None);
        let (sealed, sealed_db) = open("sealed.db", Some(Arc::new(key)));
        Fixture {
            plain,
            sealed,
            plain_db,
            sealed_db,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let f = fixture();
    let encrypted = data[0] & 1 == 1;
    let dimension = i64::from(u16::from_le_bytes([data[1], data[2]]) % 2048) - 16;
    let quality_len = usize::from(data[3]).min(data.len() - 4);
    let quality = String::from_utf8_lossy(&data[4..4 + quality_len]).into_owned();
    let blob = &data[4 + quality_len..];
    let (gallery, db) = match encrypted {
        true => (&f.sealed, &f.sealed_db),
        false => (&f.plain, &f.plain_db),
    };
    db.lock().expect("raw connection").execute(
        "UPDATE templates SET embedding = ?1, dimension = ?2, quality = ?3",
        rusqlite::params![blob, dimension, quality],
    )
    .expect("write the row");
    if let Ok(templates) = gallery.templates_of("p", "m") {
        if encrypted {
            assert_eq!(templates[0].embedding, ORIGINAL, "a forged template opened");
        }
    }
    let _ = gallery.all_templates("m");
    let _ = gallery.templates_info("p");
    let _ = TemplateIndex::load(gallery, "m");
});
