//! `facegate bench`: time each stage of the pipeline per image on this machine.
//! Benchmarks measure; nothing here asserts a time.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use facegate::detect::largest_visible;
use facegate::gallery::{Gallery, SqliteGallery};
use facegate::service::{Actor, FaceService};
use facegate::{ops, Engine, FacePolicy, ModelChoice, ModelKind};
use serde_json::json;

use facegate::embed::facenet::prewhiten;
use facegate::embed::FaceNet;
use facegate::gallery::{NewTemplate, TemplateIndex};
use facegate::models::{pins, SilentObserver};
use facegate::nn::Runtime;

use crate::context::{images_in, Context};
use crate::progress::{self, Spinner};

fn photos(ctx: &Context, dir: Option<&Path>, limit: usize) -> Result<Vec<std::path::PathBuf>> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => ctx
            .store()
            .celebrity_dataset(&Spinner::new(ctx.interactive()))?,
    };
    let mut photos = images_in(&dir)?;
    photos.truncate(limit);
    if photos.is_empty() {
        bail!("no photos found in {}", dir.display());
    }
    Ok(photos)
}

#[derive(Default)]
struct Samples(Vec<Duration>);

impl Samples {
    fn summary(&self) -> serde_json::Value {
        let mut ms: Vec<f64> = self.0.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        if ms.is_empty() {
            return json!(null);
        }
        let pick = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
        json!({
            "n": ms.len(),
            "median_ms": pick(0.5),
            "mean_ms": ms.iter().sum::<f64>() / ms.len() as f64,
            "p90_ms": pick(0.9),
            "p99_ms": pick(0.99),
        })
    }
}

pub fn run(ctx: &Context, dir: Option<&Path>, limit: usize) -> Result<ExitCode> {
    let photos = photos(ctx, dir, limit)?;
    // Models are fetched and built before timing the load, so "load" is a warm-cache start.
    drop(ctx.standalone_engine()?);
    let start = Instant::now();
    let engine = ctx.standalone_engine()?;
    let load = start.elapsed();

    let gallery_path =
        std::env::temp_dir().join(format!("facegate-bench-{}.db", std::process::id()));
    // Sealed audit entries, as every front end writes them (a fixed key: this gallery is
    // deleted at the end).
    let audit_key = facegate::gallery::AuditKey::from_bytes(&[7; 32]);
    let gallery = SqliteGallery::open(&gallery_path)?.with_audit_key(Some(Arc::new(audit_key)));
    let first = engine.load_image(&photos[0])?;
    let enrolled = ops::prepare_template(&engine, &first, true)?;
    gallery.enroll("bench", engine.model_id(), &[enrolled.template])?;

    // The FaceNet network alone, on the same crops: the floor a verify cannot go below.
    let bare = if ctx.global.model.clone().unwrap_or_default()
        == ModelChoice::single(ModelKind::Facenet)
    {
        let store = ctx.store();
        let library = store.file(&pins::ONNXRUNTIME_LIBRARY, &SilentObserver)?;
        let runtime = Runtime::load(&library)?;
        Some(FaceNet::load(
            &store,
            &runtime,
            ctx.global.threads,
            &SilentObserver,
        )?)
    } else {
        None
    };
    let (mut decode, mut detect, mut detect_largest, mut align, mut embed) = (
        Samples::default(),
        Samples::default(),
        Samples::default(),
        Samples::default(),
        Samples::default(),
    );
    let (mut verify, mut network) = (Samples::default(), Samples::default());
    let mut verify_audited = Samples::default();
    let actor = Actor::local_user();
    // Photos where the largest-first search (what a verify runs) chose another face than the
    // whole cascade: a check of its exactness on the user's own photos.
    let mut largest_differs = 0usize;
    let mut pixels = 0u64;
    let bar = progress::bar(photos.len() as u64, ctx.interactive(), "timing");
    for photo in &photos {
        bar.inc(1);
        let t = Instant::now();
        let image = engine.load_image(photo)?;
        decode.0.push(t.elapsed());
        pixels += u64::from(image.rgb.width()) * u64::from(image.rgb.height());
        let t = Instant::now();
        let faces = engine.detect(&image.rgb)?;
        detect.0.push(t.elapsed());
        let t = Instant::now();
        let largest_first = engine.detect_largest_first(&image.rgb)?;
        detect_largest.0.push(t.elapsed());
        let (w, h) = image.rgb.dimensions();
        let min = engine.options().min_face_size as f32;
        if largest_visible(&faces, w, h, min) != largest_visible(&largest_first, w, h, min) {
            largest_differs += 1;
        }
        let Some(face) = faces.iter().max_by(|a, b| a.area().total_cmp(&b.area())) else {
            continue;
        };
        let t = Instant::now();
        let crops = engine.aligned_crops(&image.rgb, face);
        align.0.push(t.elapsed());
        if let Some(facenet) = &bare {
            let input = prewhiten(&crops[0]);
            let t = Instant::now();
            facenet.run_raw(1, input)?;
            network.0.push(t.elapsed());
        }
        let t = Instant::now();
        engine.embed_crops(&[crops])?;
        embed.0.push(t.elapsed());
        let t = Instant::now();
        let image = engine.load_image(photo)?;
        let _ = ops::verify(&engine, &gallery, "bench", &image, false)?;
        verify.0.push(t.elapsed());
    }
    bar.finish_and_clear();
    // What a front end runs: the same verify through the service, its audit entry sealed and
    // written. A pass of its own: interleaved with the stages above, it slowed them down.
    for photo in &photos {
        let t = Instant::now();
        let image = engine.load_image(photo)?;
        let _ = FaceService::new(&engine, &gallery).verify(&actor, "bench", &image, false)?;
        verify_audited.0.push(t.elapsed());
    }
    // What `facegate embed` and the Python package's `Engine.embed` run: decode, the largest
    // face detected, aligned (with its quality figures) and embedded. A pass of its own too.
    let mut embed_end_to_end = Samples::default();
    for photo in &photos {
        let t = Instant::now();
        let image = engine.load_image(photo)?;
        match engine.embed_faces(&image, FacePolicy::Largest) {
            Ok(_) | Err(facegate::Error::NoFace { .. }) => {}
            Err(err) => return Err(err.into()),
        }
        embed_end_to_end.0.push(t.elapsed());
    }
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", gallery_path.display()));
    }
    let doc = json!({
        "photos": photos.len(),
        "mean_megapixels": pixels as f64 / photos.len() as f64 / 1e6,
        "threads": ctx.global.threads,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "model_load_ms": load.as_secs_f64() * 1e3,
        "decode": decode.summary(),
        "detect": detect.summary(),
        "detect_largest_first": detect_largest.summary(),
        "largest_first_other_face": largest_differs,
        "align": align.summary(),
        "embed": embed.summary(),
        "embed_end_to_end": embed_end_to_end.summary(),
        "verify_end_to_end": verify.summary(),
        "verify_audited": verify_audited.summary(),
        "bare_facenet_network": network.summary(),
    });
    ctx.emit(&doc, || {
        println!(
            "{} photos, mean {:.2} MP, {} cores; models loaded in {:.0} ms (cached)",
            photos.len(),
            doc["mean_megapixels"].as_f64().unwrap_or(0.0),
            doc["cores"],
            doc["model_load_ms"].as_f64().unwrap_or(0.0)
        );
        println!(
            "{:<22} {:>10} {:>10} {:>10}",
            "stage (per image)", "median ms", "mean ms", "p90 ms"
        );
        for key in [
            "decode",
            "detect",
            "detect_largest_first",
            "align",
            "embed",
            "embed_end_to_end",
            "verify_end_to_end",
            "verify_audited",
            "bare_facenet_network",
        ] {
            if doc[key].is_null() {
                continue;
            }
            let s = &doc[key];
            println!(
                "{:<22} {:>10.1} {:>10.1} {:>10.1}",
                key,
                s["median_ms"].as_f64().unwrap_or(f64::NAN),
                s["mean_ms"].as_f64().unwrap_or(f64::NAN),
                s["p90_ms"].as_f64().unwrap_or(f64::NAN)
            );
        }
        if largest_differs > 0 {
            println!(
                "largest-first detection chose another face than the whole cascade on {largest_differs} photo(s)"
            );
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Mean landmark positions inside the crop FaceNet was evaluated with (MTCNN box plus
/// `margin_px` at 160x160, facenet-pytorch's margin convention): the alignment template.
pub fn derive_template(ctx: &Context, dir: Option<&Path>, margin_px: f32) -> Result<ExitCode> {
    let photos = photos(ctx, dir, usize::MAX)?;
    let engine = ctx.standalone_engine()?;
    let mut sum = [[0.0f64; 2]; 5];
    let mut n = 0usize;
    for photo in &photos {
        let image = engine.load_image(photo)?;
        let faces = engine.detect(&image.rgb)?;
        let Some(face) = faces
            .iter()
            .filter(|f| f.score > 0.95)
            .max_by(|a, b| a.area().total_cmp(&b.area()))
        else {
            continue;
        };
        let (w, h) = (face.width(), face.height());
        let (mx, my) = (
            margin_px * w / (160.0 - margin_px),
            margin_px * h / (160.0 - margin_px),
        );
        let (x0, y0) = (face.bbox[0] - mx / 2.0, face.bbox[1] - my / 2.0);
        let (cw, ch) = (w + mx, h + my);
        for (k, [x, y]) in face.landmarks.iter().enumerate() {
            sum[k][0] += f64::from((x - x0) / cw * 160.0);
            sum[k][1] += f64::from((y - y0) / ch * 160.0);
        }
        n += 1;
    }
    let mean: Vec<[f64; 2]> = sum
        .iter()
        .map(|[x, y]| [x / n as f64, y / n as f64])
        .collect();
    let doc = json!({ "faces": n, "margin_px": margin_px, "template_160": mean });
    ctx.emit(&doc, || {
        println!("{n} faces; mean landmarks in a 160x160 box+{margin_px}px crop:");
        for [x, y] in &mean {
            println!("    [{x:.1}, {y:.1}],");
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Synthetic unit vectors (xorshift, seeded): stand-ins for templates at sizes no photo set has.
fn synthetic(seed: u64, dimension: usize) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let v: Vec<f32> = (0..dimension)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

/// `facegate bench-search`: 1:N search latency on a synthetic gallery, exact and int8.
pub fn search(
    ctx: &Context,
    templates: usize,
    queries: usize,
    dimension: usize,
    sqlite: bool,
    postgres: Option<&str>,
    real: Option<&Path>,
) -> Result<ExitCode> {
    let queries = queries.max(1);
    let start = Instant::now();
    let mut index = TemplateIndex::new(dimension);
    let mut gallery_open_ms = None;
    let mut index_load_ms = None;
    let mut real_probes: Option<Vec<Vec<f32>>> = None;
    if let Some(path) = real {
        // Real face embeddings: the first `queries` are the probes, the rest the gallery.
        anyhow::ensure!(
            path.is_file(),
            "{} does not exist; `facegate eval` writes its embedding cache there",
            path.display()
        );
        let mut all =
            facegate::eval::EmbeddingCache::open(path)?.embeddings_of_dimension(dimension)?;
        anyhow::ensure!(
            all.len() > queries,
            "{} holds {} embeddings of {dimension} values; need more than {queries}",
            path.display(),
            all.len()
        );
        let gallery = all.split_off(queries);
        index = TemplateIndex::new(gallery[0].len());
        for (i, v) in gallery.iter().enumerate() {
            index.push(&format!("person-{i:07}"), i as i64, v)?;
        }
        real_probes = Some(all);
    } else if sqlite {
        // Through the real gallery: write it once, then time a cold open and index load.
        let dir = tempfile_dir()?;
        let path = dir.join("gallery.db");
        {
            let gallery = SqliteGallery::open(&path)?;
            let bar = progress::bar(templates as u64, ctx.interactive(), "writing gallery");
            for chunk_start in (0..templates).step_by(50_000) {
                let batch: Vec<(String, Vec<NewTemplate>)> = (chunk_start
                    ..(chunk_start + 50_000).min(templates))
                    .map(|i| {
                        (
                            format!("person-{i:07}"),
                            vec![NewTemplate {
                                embedding: synthetic(i as u64, dimension),
                                image_sha256: format!("{i:064x}"),
                                bbox: [0.0; 4],
                                detector_score: 1.0,
                                source: "synthetic".into(),
                                quality: None,
                            }],
                        )
                    })
                    .collect();
                gallery.enroll_batch("synthetic", &batch)?;
                bar.inc(batch.len() as u64);
            }
            bar.finish_and_clear();
        }
        let t = Instant::now();
        let gallery = SqliteGallery::open(&path)?;
        gallery_open_ms = Some(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        index = TemplateIndex::load(&gallery, "synthetic")?;
        index_load_ms = Some(t.elapsed().as_secs_f64() * 1e3);
        drop(gallery);
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        for i in 0..templates {
            index.push(
                &format!("person-{i:07}"),
                i as i64,
                &synthetic(i as u64, dimension),
            )?;
        }
    }
    let build = start.elapsed();
    let templates = index.len();
    let dimension = index.dimension();
    // Queries: a stored template plus noise, so each has a true nearest neighbour.
    let probes: Vec<(usize, Vec<f32>)> = match real_probes {
        Some(probes) => probes
            .into_iter()
            .map(|p| (index.search(&p, 1).first().map_or(0, |h| h.row), p))
            .collect(),
        None => (0..queries)
            .map(|q| {
                let target = (q * 7919 + 13) % templates.max(1);
                let noise = synthetic(10_000_000_000 + q as u64, dimension);
                let mixed: Vec<f32> = index
                    .vector(target)
                    .iter()
                    .zip(&noise)
                    .map(|(a, b)| a + 0.6 * b)
                    .collect();
                let norm = mixed.iter().map(|x| x * x).sum::<f32>().sqrt();
                (target, mixed.into_iter().map(|x| x / norm).collect())
            })
            .collect(),
    };
    let (mut full_scan, mut exact, mut approximate) =
        (Samples::default(), Samples::default(), Samples::default());
    let quantized = index.quantize();
    let t = Instant::now();
    index.prepare();
    let prepare_ms = t.elapsed().as_secs_f64() * 1e3;
    let (mut found, mut agree) = (0usize, 0usize);
    // Interleaved, after one warm-up query each.
    let _ = index.search(&probes[0].1, 5);
    let _ = quantized.search(&index, &probes[0].1, 5, 8);
    let mut same_as_full_scan = 0usize;
    for (target, probe) in &probes {
        let t = Instant::now();
        let scanned = index.search_full_scan(probe, 5);
        full_scan.0.push(t.elapsed());
        let t = Instant::now();
        let hits = index.search(probe, 5);
        exact.0.push(t.elapsed());
        same_as_full_scan += usize::from(hits == scanned);
        let t = Instant::now();
        let approx = quantized.search(&index, probe, 5, 8);
        approximate.0.push(t.elapsed());
        found += usize::from(hits.first().map(|h| h.row) == Some(*target));
        agree += usize::from(hits.first().map(|h| h.row) == approx.first().map(|h| h.row));
    }
    let postgres = match postgres {
        Some(url) => Some(search_postgres(ctx, url, &index, &probes, dimension)?),
        None => None,
    };
    let doc = json!({
        "postgres": postgres,
        "templates": index.len(),
        "dimension": dimension,
        "queries": queries,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "build_ms": build.as_secs_f64() * 1e3,
        "gallery_open_ms": gallery_open_ms,
        "index_load_ms": index_load_ms,
        "matrix_mib": index.matrix_bytes() as f64 / (1 << 20) as f64,
        "prepare_ms": prepare_ms,
        "full_scan": full_scan.summary(),
        "exact": exact.summary(),
        "exact_same_as_full_scan": same_as_full_scan as f64 / queries as f64,
        "exact_found_true_neighbour": found as f64 / queries as f64,
        "int8": approximate.summary(),
        "int8_mib": quantized.bytes() as f64 / (1 << 20) as f64,
        "int8_recall_at_1": agree as f64 / queries as f64,
    });
    ctx.emit(&doc, || {
        println!(
            "{} templates x {dimension}, {} queries, top 5; index ready in {:.0} ms",
            index.len(),
            queries,
            build.as_secs_f64() * 1e3
        );
        if let (Some(open), Some(load)) = (gallery_open_ms, index_load_ms) {
            println!("SQLite gallery: open {open:.1} ms, load into the index {load:.0} ms");
        }
        for (name, key) in [
            ("exact, f32 full scan", "full_scan"),
            ("exact (int8 bounds)", "exact"),
            ("approx int8 top-k", "int8"),
        ] {
            let s = &doc[key];
            println!(
                "{name:<22} median {:>7.2} ms   p90 {:>7.2} ms",
                s["median_ms"].as_f64().unwrap_or(f64::NAN),
                s["p90_ms"].as_f64().unwrap_or(f64::NAN)
            );
        }
        println!(
            "exact search equal to the full scan: {:.3}; approx int8 recall@1 vs exact: {:.3}",
            doc["exact_same_as_full_scan"].as_f64().unwrap_or(0.0),
            doc["int8_recall_at_1"].as_f64().unwrap_or(0.0)
        );
        if let Some(pg) = doc["postgres"].as_object() {
            let ms = |key: &str, q: &str| pg[key][q].as_f64().unwrap_or(f64::NAN);
            println!(
                "PostgreSQL: load {:.1} s ({:.0} templates/s), HNSW build {:.1} s",
                pg["load_s"].as_f64().unwrap_or(f64::NAN),
                pg["load_templates_per_s"].as_f64().unwrap_or(f64::NAN),
                pg["index_build_s"].as_f64().unwrap_or(f64::NAN)
            );
            println!(
                "PostgreSQL HNSW        p50 {:>7.2} ms   p99 {:>7.2} ms   recall@1 vs exact {:.3}",
                ms("index", "median_ms"),
                ms("index", "p99_ms"),
                pg["index_recall_at_1"].as_f64().unwrap_or(f64::NAN)
            );
            println!(
                "PostgreSQL exact scan  p50 {:>7.2} ms   p99 {:>7.2} ms   same top-1 as in-process exact {:.3}",
                ms("exact", "median_ms"),
                ms("exact", "p99_ms"),
                pg["exact_same_top1"].as_f64().unwrap_or(f64::NAN)
            );
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

/// 1:N inside PostgreSQL on the same synthetic templates and probes: bulk load (once), HNSW
/// build, index and exact search latency, recall@1 against the in-process exact search.
fn search_postgres(
    ctx: &Context,
    url: &str,
    index: &TemplateIndex,
    probes: &[(usize, Vec<f32>)],
    dimension: usize,
) -> Result<serde_json::Value> {
    use facegate::gallery::{Gallery, PostgresGallery};
    let with = |setting: &str| {
        let joiner = if url.contains('?') { '&' } else { '?' };
        format!("{url}{joiner}{setting}")
    };
    let indexed = PostgresGallery::open(&with("search=index"))?;
    let exact = PostgresGallery::open(&with("search=exact"))?;
    let templates = index.len();
    let counts = indexed.counts()?;
    let (mut load_s, mut build_s) = (None, None);
    if counts.templates == 0 {
        let bar = progress::bar(templates as u64, ctx.interactive(), "loading PostgreSQL");
        let t = Instant::now();
        for chunk_start in (0..templates).step_by(50_000) {
            let batch: Vec<(String, Vec<NewTemplate>)> = (chunk_start
                ..(chunk_start + 50_000).min(templates))
                .map(|i| {
                    (
                        format!("person-{i:07}"),
                        vec![NewTemplate {
                            embedding: index.vector(i).to_vec(),
                            image_sha256: format!("{i:064x}"),
                            bbox: [0.0; 4],
                            detector_score: 1.0,
                            source: "synthetic".into(),
                            quality: None,
                        }],
                    )
                })
                .collect();
            indexed.enroll_batch("synthetic", &batch, true)?;
            bar.inc(batch.len() as u64);
        }
        bar.finish_and_clear();
        load_s = Some(t.elapsed().as_secs_f64());
    } else if counts.templates != templates || indexed.model_id()?.as_deref() != Some("synthetic") {
        anyhow::bail!(
            "{} holds {} templates, not this synthetic gallery of {templates}; use an empty database",
            indexed.options().display,
            counts.templates
        );
    }
    let t = Instant::now();
    if indexed.build_vector_index()? {
        build_s = Some(t.elapsed().as_secs_f64());
    }
    let uses_index = indexed.search_uses_vector_index(dimension)?;
    let (mut index_times, mut exact_times) = (Samples::default(), Samples::default());
    let (mut index_agree, mut exact_agree, mut exact_n) = (0usize, 0usize, 0usize);
    let _ = indexed.nearest("synthetic", &probes[0].1, 5)?;
    for (q, (_, probe)) in probes.iter().enumerate() {
        let truth = index.search(probe, 1).first().map(|h| h.person.clone());
        let t = Instant::now();
        let found = indexed.nearest("synthetic", probe, 5)?;
        index_times.0.push(t.elapsed());
        let top = found.and_then(|f| f.hits.first().map(|h| h.person.clone()));
        index_agree += usize::from(top == truth);
        // A full scan per query is slow at a million rows: time a few.
        if q < 10 {
            let t = Instant::now();
            let found = exact.nearest("synthetic", probe, 5)?;
            exact_times.0.push(t.elapsed());
            let top = found.and_then(|f| f.hits.first().map(|h| h.person.clone()));
            exact_agree += usize::from(top == truth);
            exact_n += 1;
        }
    }
    Ok(json!({
        "load_s": load_s,
        "load_templates_per_s": load_s.map(|s| templates as f64 / s),
        "index_build_s": build_s,
        "uses_hnsw_index": uses_index,
        "index": index_times.summary(),
        "index_recall_at_1": index_agree as f64 / probes.len() as f64,
        "exact": exact_times.summary(),
        "exact_same_top1": exact_agree as f64 / exact_n.max(1) as f64,
        "ef_search": indexed.options().ef_search,
    }))
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("facegate-bench-search-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// One identification run over a clip, as `bench-video` reports it.
#[derive(serde::Serialize)]
struct VideoRun {
    frames: u64,
    seconds: f64,
    frames_per_second: f64,
    /// Frames searched whole, of all frames.
    whole_frame_share: f64,
    /// Faces followed long enough to be decided (`enter` events).
    tracks: usize,
    /// Who each decided track was (`null`: nobody enrolled), in order of appearance.
    decisions: Vec<Option<String>>,
    /// Wall-clock time from reading a face's first frame to its decision, median.
    median_ms_to_decision: Option<f64>,
    /// This process's peak resident memory during the run (VmHWM), MiB.
    peak_rss_mib: Option<f64>,
}

/// A frame source that remembers when each frame was read.
struct Timed<'a> {
    inner: &'a mut dyn facegate::video_input::FrameSource,
    read_at: Arc<std::sync::Mutex<Vec<Instant>>>,
}

impl facegate::video_input::FrameSource for Timed<'_> {
    fn next_frame(
        &mut self,
    ) -> Result<Option<facegate::video_input::Frame>, facegate::video_input::VideoError> {
        let frame = self.inner.next_frame()?;
        if frame.is_some() {
            let mut read = self.read_at.lock().unwrap_or_else(|p| p.into_inner());
            read.push(Instant::now());
        }
        Ok(frame)
    }

    fn dropped(&self) -> u64 {
        self.inner.dropped()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// Starts this process's peak resident memory afresh (Linux), so that each run's peak is its
/// own rather than the highest of every run so far: memory the previous run freed is handed
/// back to the system first.
fn reset_peak_rss() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the system.
    unsafe {
        libc::malloc_trim(0);
    }
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Identification over one clip under `settings`.
fn identify_run(
    engine: &Engine,
    gallery: &dyn Gallery,
    clip: &Path,
    fps: f64,
    settings: &facegate::video::IdentifyFromVideo,
) -> Result<VideoRun> {
    use facegate::video::PresenceEvent;
    use facegate::video_input::ffmpeg::{FfmpegInput, FfmpegSource};
    let mut source = FfmpegSource::open(&FfmpegInput::file(&clip.to_string_lossy(), fps))
        .map_err(facegate::Error::from)?;
    let read_at = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut timed = Timed {
        inner: &mut source,
        read_at: read_at.clone(),
    };
    let stop: facegate::video::StopFlag = Default::default();
    reset_peak_rss();
    let (mut decisions, mut latencies) = (Vec::new(), Vec::new());
    let (mut frames, mut whole) = (0, 0);
    let start = Instant::now();
    facegate::video::identify_video(engine, gallery, &mut timed, settings, &stop, &mut |event| {
        match event {
            PresenceEvent::Enter { person, time_s, .. } => {
                decisions.push(person);
                // From reading the frame the face first appeared in, to now.
                let first = (time_s * fps).round() as usize;
                let read = read_at.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(at) = read.get(first) {
                    latencies.push(at.elapsed().as_secs_f64() * 1e3);
                }
            }
            PresenceEvent::End {
                frames: n,
                searched_whole,
                ..
            } => {
                frames = n;
                whole = searched_whole;
            }
            PresenceEvent::Leave { .. } => {}
        }
    })?;
    let seconds = start.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    Ok(VideoRun {
        frames,
        seconds,
        frames_per_second: frames as f64 / seconds.max(1e-9),
        whole_frame_share: whole as f64 / frames.max(1) as f64,
        tracks: decisions.len(),
        median_ms_to_decision: latencies.get(latencies.len() / 2).copied(),
        decisions,
        peak_rss_mib: peak_rss_mib(),
    })
}

/// Who a clip shows, enrolled from the clip itself: every face followed through it (the whole
/// frame searched every frame) for at least `min_frames` frames, at its best frame; faces that
/// match one another (the 1:1 threshold) are one person. Returns the people's names and how
/// many followed faces they came from.
fn enroll_from_clip(
    engine: &Engine,
    gallery: &dyn Gallery,
    clip: &Path,
    fps: f64,
    min_frames: u64,
) -> Result<(Vec<String>, usize)> {
    use facegate::video_input::ffmpeg::{FfmpegInput, FfmpegSource};
    let mut source = FfmpegSource::open(&FfmpegInput::file(&clip.to_string_lossy(), fps))
        .map_err(facegate::Error::from)?;
    let stop: facegate::video::StopFlag = Default::default();
    let mut faces = facegate::video::faces_in_video(engine, &mut source, &stop)?;
    faces.retain(|f| f.frames >= min_frames);
    faces.sort_by(|a, b| b.quality.score().total_cmp(&a.quality.score()));
    let threshold = engine.threshold();
    let mut people: Vec<Vec<&facegate::video::FollowedFace>> = Vec::new();
    for face in &faces {
        let same = people.iter_mut().find(|person| {
            person.iter().any(|known| {
                threshold.is_match(&facegate::decide::Distances::between(
                    &known.embedding,
                    &face.embedding,
                ))
            })
        });
        match same {
            Some(person) => person.push(face),
            None => people.push(vec![face]),
        }
    }
    let stem = clip
        .file_stem()
        .map_or_else(|| "clip".into(), |s| s.to_string_lossy().into_owned());
    let mut names = Vec::new();
    for (k, person) in people.iter().enumerate() {
        let name = format!("{stem} person {}", k + 1);
        let templates: Vec<NewTemplate> = person
            .iter()
            .map(|f| NewTemplate {
                embedding: f.embedding.clone(),
                image_sha256: f.image_sha256.clone(),
                bbox: f.face.bbox,
                detector_score: f.face.score,
                source: format!("{}@{:.2}s", clip.display(), f.best_s),
                quality: serde_json::to_value(f.quality).ok(),
            })
            .collect();
        gallery
            .enroll(&name, engine.model_id(), &templates)
            .map_err(facegate::Error::from)?;
        names.push(name);
    }
    Ok((names, faces.len()))
}

/// Names decided in `run`, once each.
fn identified(run: &VideoRun) -> std::collections::BTreeSet<String> {
    run.decisions.iter().flatten().cloned().collect()
}

/// `facegate bench-video`: each clip identified twice at its full frame rate, searching every
/// frame whole and embedding every face, then following faces between whole-frame searches.
/// Without a gallery, the people each clip shows are first enrolled from it, so that the two
/// runs' decisions name people and can be compared.
pub fn video(
    ctx: &Context,
    clips: &[std::path::PathBuf],
    fps: Option<f64>,
    detect_every: Option<u64>,
    embed_every: Option<u64>,
    min_face_sizes: &[u32],
) -> Result<ExitCode> {
    use facegate::video::IdentifyFromVideo;
    if fps.is_some_and(|f| !(f > 0.0 && f <= 120.0)) {
        anyhow::bail!("--fps must be above 0 and at most 120");
    }
    let engine = ctx.engine()?;
    let users = ctx.gallery_for_read()?;
    let scratch_dir = tempfile_dir()?;
    let every_frame = IdentifyFromVideo::default();
    let sizes: Vec<Option<u32>> = if min_face_sizes.is_empty() {
        vec![None]
    } else {
        min_face_sizes.iter().map(|px| Some(*px)).collect()
    };
    let engine_minimum = engine.options().min_face_size;
    // A face followed this long (0.2 s at 25 frames/s) is someone to enroll.
    let min_frames = 5;
    let mut results = Vec::new();
    for (n, clip) in clips.iter().enumerate() {
        let path = clip.to_string_lossy();
        let rate = match fps {
            Some(f) => f,
            None => facegate::video_input::ffmpeg::frame_rate(&path)
                .map_err(facegate::Error::from)?
                .unwrap_or(25.0)
                .min(120.0),
        };
        let (gallery, enrolled) = match &users {
            Some(g) => (g.clone(), None),
            None => {
                let scratch = scratch_dir.join(format!("clip-{n}.db"));
                let gallery: Arc<dyn Gallery> =
                    Arc::new(SqliteGallery::open(&scratch).map_err(facegate::Error::from)?);
                let (people, faces) =
                    enroll_from_clip(&engine, gallery.as_ref(), clip, rate, min_frames)?;
                (
                    gallery,
                    Some(json!({"people": people, "from_followed_faces": faces})),
                )
            }
        };
        let whole = identify_run(&engine, gallery.as_ref(), clip, rate, &every_frame)?;
        let by_whole = identified(&whole);
        let following = IdentifyFromVideo::following(rate);
        let mut followed = Vec::new();
        for size in &sizes {
            let settings = IdentifyFromVideo {
                detect_every: detect_every.unwrap_or(following.detect_every),
                embed_every: embed_every.unwrap_or(following.embed_every),
                min_face_size: *size,
                ..following
            };
            let follow = identify_run(&engine, gallery.as_ref(), clip, rate, &settings)?;
            let by_follow = identified(&follow);
            followed.push(json!({
                "detect_every": settings.detect_every,
                "embed_every": settings.embed_every,
                "min_face_size": size.unwrap_or(engine_minimum).max(engine_minimum),
                "run": follow,
                "speedup": follow.frames_per_second / whole.frames_per_second.max(1e-9),
                "identified_by_both": by_whole.intersection(&by_follow).collect::<Vec<_>>(),
                "missed_when_followed": by_whole.difference(&by_follow).collect::<Vec<_>>(),
                "only_when_followed": by_follow.difference(&by_whole).collect::<Vec<_>>(),
            }));
        }
        results.push(json!({
            "clip": clip.display().to_string(),
            "frames_per_second_in": rate,
            "enrolled_from_clip": enrolled,
            "every_frame": whole,
            "identified": by_whole.len(),
            "followed": followed,
        }));
    }
    let _ = std::fs::remove_dir_all(&scratch_dir);
    let doc = json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "min_face_size": engine_minimum,
        "model": engine.model_id(),
        "clips": results,
    });
    ctx.emit(&doc, || {
        println!(
            "{} cores; followed: the whole frame searched every N frames (default: 0.2 s), a face re-embedded when seen better, at most every M frames (0.4 s)",
            doc["cores"]
        );
        println!(
            "{:<36} {:>6} {:>9} {:>5} {:>5} {:>9} {:>7} {:>6} {:>6} {:>6} {:>6} {:>8} {:>8}",
            "clip",
            "fps in",
            "every fps",
            "N/M",
            "min",
            "foll fps",
            "whole%",
            "tracks",
            "f.trk",
            "ident",
            "missed",
            "ms->dec",
            "peak MiB"
        );
        for r in doc["clips"].as_array().into_iter().flatten() {
            let name = r["clip"].as_str().unwrap_or("");
            let short = name.rsplit('/').next().unwrap_or(name);
            for f in r["followed"].as_array().into_iter().flatten() {
                let run = &f["run"];
                println!(
                    "{:<36} {:>6.1} {:>9.1} {:>5} {:>5} {:>9.1} {:>6.0}% {:>6} {:>6} {:>6} {:>6} {:>8.0} {:>8.0}",
                    short,
                    r["frames_per_second_in"].as_f64().unwrap_or(0.0),
                    r["every_frame"]["frames_per_second"].as_f64().unwrap_or(0.0),
                    format!("{}/{}", f["detect_every"], f["embed_every"]),
                    f["min_face_size"],
                    run["frames_per_second"].as_f64().unwrap_or(0.0),
                    100.0 * run["whole_frame_share"].as_f64().unwrap_or(0.0),
                    r["every_frame"]["tracks"],
                    run["tracks"],
                    r["identified"],
                    f["missed_when_followed"].as_array().map_or(0, Vec::len),
                    run["median_ms_to_decision"].as_f64().unwrap_or(f64::NAN),
                    run["peak_rss_mib"].as_f64().unwrap_or(f64::NAN),
                );
            }
        }
    })?;
    Ok(ExitCode::SUCCESS)
}
