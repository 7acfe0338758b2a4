//! The user-level operations, shared by the CLI and the server. Each returns a plain,
//! serialisable outcome; field names are part of the documented `--json` output.

use facegate_decide::{Distances, Threshold};
use facegate_detect::Face;
use facegate_gallery::{Gallery, GalleryError, NewTemplate, Template, TemplateIndex};
use facegate_image::LoadedImage;
use serde::Serialize;

use crate::quality::QualityReport;
use crate::{EmbeddedFace, Engine, Error, FacePolicy, FarEstimate};
use facegate_liveness::LivenessScore;

/// A face turned into a template, ready to store.
#[derive(Clone, Debug)]
pub struct PreparedTemplate {
    pub template: NewTemplate,
    pub face: Face,
    pub faces_found: usize,
    pub quality: QualityReport,
    /// Present when the engine checks liveness.
    pub liveness: Option<LivenessScore>,
}

/// Detects and embeds the enrollment face of a photo: exactly one face, or the largest when
/// `largest` is set.
pub fn prepare_template(
    engine: &Engine,
    image: &LoadedImage,
    largest: bool,
) -> Result<PreparedTemplate, Error> {
    let policy = if largest {
        FacePolicy::Largest
    } else {
        FacePolicy::Single
    };
    let (mut faces, faces_found) = engine.embed_faces(image, policy)?;
    let EmbeddedFace {
        face,
        embedding,
        quality,
    } = faces.remove(0);
    let quality = engine.judge_quality(image, quality, engine.options().enroll_quality)?;
    let liveness = engine.liveness(&image.rgb, &face)?;
    if let Some(score) = liveness.as_ref().filter(|s| !s.live) {
        // A template made from a replayed photo would let the attack in again later.
        return Err(Error::NotLive {
            source_name: image.source_name.clone(),
            score: score.score,
            threshold: score.threshold,
        });
    }
    Ok(PreparedTemplate {
        template: NewTemplate {
            embedding,
            image_sha256: image.sha256.clone(),
            bbox: face.bbox,
            detector_score: face.score,
            source: image.source_name.clone(),
            quality: serde_json::to_value(&quality).ok(),
        },
        face,
        faces_found,
        quality,
        liveness,
    })
}

/// One probe face compared against a person's templates.
#[derive(Clone, Debug, Serialize)]
pub struct FaceVerdict {
    pub face: Face,
    pub is_match: bool,
    /// Distance in the threshold's metric to the closest template.
    pub distance: f32,
    pub distances: Distances,
    pub best_template_id: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct VerifyOutcome {
    pub person: String,
    pub is_match: bool,
    pub distance: f32,
    pub distances: Distances,
    pub threshold: Threshold,
    pub model: String,
    /// The face the decision is about (the largest, or with `--all-faces` the closest).
    pub face: Face,
    /// Faces in the photo; without `--all-faces`, faces under a third of the largest one's
    /// size are not searched for (see [`crate::Detector::detect_largest_first`]).
    pub faces_found: usize,
    /// Every face compared (one unless `--all-faces`).
    pub faces: Vec<FaceVerdict>,
    pub templates_compared: usize,
    /// How often two different people come out this close (from calibration data).
    pub estimated_far: Option<FarEstimate>,
    pub note: Option<String>,
    /// Quality of the decided face.
    pub quality: QualityReport,
    /// The liveness verdict on the decided face, when requested; never part of `distance`.
    pub liveness: Option<LivenessScore>,
    /// `is_match`, and live when liveness was checked.
    pub accepted: bool,
}

/// 1:1 — is the person in `image` the enrolled `person`? Compares with every template of that
/// person and decides on the closest.
pub fn verify(
    engine: &Engine,
    gallery: &dyn Gallery,
    person: &str,
    image: &LoadedImage,
    all_faces: bool,
) -> Result<VerifyOutcome, Error> {
    let templates = gallery.templates_of(person, engine.model_id())?;
    let policy = if all_faces {
        FacePolicy::All
    } else {
        FacePolicy::Largest
    };
    let (faces, faces_found) = engine.embed_faces(image, policy)?;
    let threshold = engine.threshold();
    let mut verdicts: Vec<(FaceVerdict, QualityReport)> = faces
        .into_iter()
        .filter_map(|f| {
            let (template, distances) = closest(&f.embedding, &templates, &threshold)?;
            let verdict = FaceVerdict {
                is_match: threshold.is_match(&distances),
                distance: distances.get(threshold.metric),
                distances,
                best_template_id: template.id,
                face: f.face,
            };
            Some((verdict, f.quality))
        })
        .collect();
    verdicts.sort_by(|a, b| a.0.distance.total_cmp(&b.0.distance));
    let (best, quality) = verdicts
        .first()
        .cloned()
        .ok_or_else(|| GalleryError::UnknownPerson {
            name: person.to_string(),
        })?;
    let verdicts: Vec<FaceVerdict> = verdicts.into_iter().map(|(v, _)| v).collect();
    let quality = engine.judge_quality(image, quality, engine.options().verify_quality)?;
    let liveness = engine.liveness(&image.rgb, &best.face)?;
    Ok(VerifyOutcome {
        accepted: best.is_match && liveness.as_ref().is_none_or(|l| l.live),
        quality,
        liveness,
        person: person.to_string(),
        is_match: best.is_match,
        distance: best.distance,
        distances: best.distances,
        threshold,
        model: engine.model_id().to_string(),
        face: best.face.clone(),
        faces_found,
        faces: verdicts,
        templates_compared: templates.len(),
        estimated_far: engine.estimated_far(best.distances.euclidean),
        note: several_faces_note(faces_found, all_faces),
    })
}

/// The face of a verify photo, found, measured and judged as [`verify`] does, with no one to
/// compare it with.
#[derive(Clone, Debug)]
pub struct UnmatchedFace {
    pub face: Face,
    pub faces_found: usize,
    pub quality: QualityReport,
    pub liveness: Option<LivenessScore>,
}

/// For callers who may not learn who is enrolled: a verify against a name nobody has does the
/// same work as [`verify`] and fails the same way for the same photo (no face, poor quality),
/// so its answer, "no match", cannot be told from a failed match.
pub fn check_face_only(engine: &Engine, image: &LoadedImage) -> Result<UnmatchedFace, Error> {
    let (mut faces, faces_found) = engine.embed_faces(image, FacePolicy::Largest)?;
    let face = faces.remove(0);
    let quality = engine.judge_quality(image, face.quality, engine.options().verify_quality)?;
    let liveness = engine.liveness(&image.rgb, &face.face)?;
    Ok(UnmatchedFace {
        face: face.face,
        faces_found,
        quality,
        liveness,
    })
}

#[derive(Clone, Debug, Serialize)]
pub struct Candidate {
    pub person: String,
    pub distance: f32,
    pub distances: Distances,
    pub is_match: bool,
    pub best_template_id: i64,
    pub estimated_far: Option<FarEstimate>,
}

#[derive(Clone, Debug, Serialize)]
pub struct IdentifiedFace {
    pub face: Face,
    /// The best candidate if it is within the threshold, else `None` ("unknown").
    pub identity: Option<String>,
    /// People ranked by their closest template, at most `top`.
    pub candidates: Vec<Candidate>,
    pub quality: QualityReport,
    /// The liveness verdict, when requested.
    pub liveness: Option<LivenessScore>,
}

#[derive(Clone, Debug, Serialize)]
pub struct IdentifyOutcome {
    /// Identity of the decision face (largest, or the first face with `--all-faces`).
    pub identity: Option<String>,
    pub faces: Vec<IdentifiedFace>,
    /// Faces in the photo (as [`VerifyOutcome::faces_found`] counts them).
    pub faces_found: usize,
    /// The 1:N threshold: chosen for the target FPIR and the number of people searched (see
    /// [`Engine::identification_threshold`]), so a larger gallery gets a stricter one.
    pub threshold: Threshold,
    /// The false positive identification rate the threshold was chosen for.
    pub target_fpir: f64,
    pub model: String,
    pub people_searched: usize,
    pub templates_searched: usize,
    pub note: Option<String>,
}

/// 1:N — who in the gallery is this? A gallery that searches itself (PostgreSQL) is asked
/// directly; otherwise the gallery is read into a search index first. A long-running caller
/// keeps the index with [`IndexCache`] and calls [`identify_cached`].
pub fn identify(
    engine: &Engine,
    gallery: &dyn Gallery,
    image: &LoadedImage,
    top: usize,
    all_faces: bool,
) -> Result<IdentifyOutcome, Error> {
    if gallery.searches_in_place() {
        return identify_with(engine, Searcher::Gallery(gallery), image, top, all_faces);
    }
    let index = TemplateIndex::load(gallery, engine.model_id())?;
    identify_in(engine, &index, image, top, all_faces)
}

/// [`identify`] with the index kept in `cache` between calls.
pub fn identify_cached(
    engine: &Engine,
    gallery: &dyn Gallery,
    cache: &IndexCache,
    image: &LoadedImage,
    top: usize,
    all_faces: bool,
) -> Result<IdentifyOutcome, Error> {
    match cache.get(gallery, engine.model_id())? {
        Some(index) => identify_in(engine, &index, image, top, all_faces),
        None => identify_with(engine, Searcher::Gallery(gallery), image, top, all_faces),
    }
}

/// 1:N against a loaded index: ranks people by their closest template (exact search).
pub fn identify_in(
    engine: &Engine,
    index: &TemplateIndex,
    image: &LoadedImage,
    top: usize,
    all_faces: bool,
) -> Result<IdentifyOutcome, Error> {
    identify_with(engine, Searcher::Index(index), image, top, all_faces)
}

/// Where 1:N candidates come from.
#[derive(Clone, Copy)]
pub enum Searcher<'a> {
    /// Templates loaded into this process.
    Index(&'a TemplateIndex),
    /// The gallery's own database search ([`Gallery::nearest`]).
    Gallery(&'a dyn Gallery),
}

/// People closest to one embedding: `(person, template id, template)`, plus how many people
/// and templates were searched.
type Ranked = (Vec<(String, i64, Vec<f32>)>, usize, usize);

impl Searcher<'_> {
    fn is_empty(&self) -> Result<bool, Error> {
        Ok(match self {
            Searcher::Index(index) => index.is_empty(),
            Searcher::Gallery(gallery) => gallery.counts()?.templates == 0,
        })
    }

    fn rank(&self, model_id: &str, probe: &[f32], top: usize) -> Result<Ranked, Error> {
        match self {
            Searcher::Index(index) => Ok((
                index
                    .search(probe, top)
                    .into_iter()
                    .map(|hit| {
                        let template = index.vector(hit.row).to_vec();
                        (hit.person, hit.template_id, template)
                    })
                    .collect(),
                index.people(),
                index.len(),
            )),
            Searcher::Gallery(gallery) => {
                let Some(found) = gallery.nearest(model_id, probe, top)? else {
                    // Not a self-searching gallery after all: read it into an index.
                    let index = TemplateIndex::load(*gallery, model_id)?;
                    return Searcher::Index(&index).rank(model_id, probe, top);
                };
                Ok((
                    found
                        .hits
                        .into_iter()
                        .map(|h| (h.person, h.template_id, h.embedding))
                        .collect(),
                    found.people_searched,
                    found.templates_searched,
                ))
            }
        }
    }
}

/// The `top` people closest to one embedding, closest first, with the decision for each at
/// the 1:N threshold for that many people ([`Engine::identification_threshold`]); also how
/// many people and templates were searched.
pub fn rank_people(
    engine: &Engine,
    searcher: Searcher<'_>,
    embedding: &[f32],
    top: usize,
) -> Result<(Vec<Candidate>, usize, usize), Error> {
    let (ranked, people, templates) = searcher.rank(engine.model_id(), embedding, top.max(1))?;
    let threshold = engine.identification_threshold(people);
    let mut candidates: Vec<Candidate> = ranked
        .into_iter()
        .map(|(person, template_id, template)| {
            let distances = Distances::between(embedding, &template);
            Candidate {
                person,
                distance: distances.get(threshold.metric),
                distances,
                is_match: threshold.is_match(&distances),
                best_template_id: template_id,
                estimated_far: engine.estimated_far(distances.euclidean),
            }
        })
        .collect();
    candidates.sort_by(|a, b| {
        a.distance
            .total_cmp(&b.distance)
            .then_with(|| a.person.cmp(&b.person))
    });
    Ok((candidates, people, templates))
}

/// 1:N: ranks people by their closest template.
pub fn identify_with(
    engine: &Engine,
    searcher: Searcher<'_>,
    image: &LoadedImage,
    top: usize,
    all_faces: bool,
) -> Result<IdentifyOutcome, Error> {
    if searcher.is_empty()? {
        return Err(GalleryError::Empty.into());
    }
    let policy = if all_faces {
        FacePolicy::All
    } else {
        FacePolicy::Largest
    };
    let (faces, faces_found) = engine.embed_faces(image, policy)?;
    let mut threshold = engine.threshold();
    let (mut people_searched, mut templates_searched) = (0, 0);
    let mut identified = Vec::with_capacity(faces.len());
    for f in faces {
        let (candidates, people, templates) = rank_people(engine, searcher, &f.embedding, top)?;
        if people != people_searched {
            threshold = engine.identification_threshold(people);
        }
        (people_searched, templates_searched) = (people, templates);
        let identity = candidates
            .first()
            .filter(|c| c.is_match)
            .map(|c| c.person.clone());
        let quality = engine.judge_quality(image, f.quality, engine.options().verify_quality)?;
        let liveness = engine.liveness(&image.rgb, &f.face)?;
        identified.push(IdentifiedFace {
            face: f.face,
            identity,
            candidates,
            quality,
            liveness,
        });
    }
    Ok(IdentifyOutcome {
        identity: identified.first().and_then(|f| f.identity.clone()),
        faces: identified,
        faces_found,
        threshold,
        target_fpir: engine.target_fpir(),
        model: engine.model_id().to_string(),
        people_searched,
        templates_searched,
        note: several_faces_note(faces_found, all_faces),
    })
}

/// A search index kept across requests, rebuilt when the gallery's revision changes (a write
/// by this process or any other).
#[derive(Default)]
pub struct IndexCache {
    cached: std::sync::Mutex<Option<CachedIndex>>,
}

struct CachedIndex {
    revision: u64,
    model_id: String,
    index: std::sync::Arc<TemplateIndex>,
}

impl IndexCache {
    /// The index for `gallery`, or `None` when the gallery searches itself (nothing to cache).
    pub fn get(
        &self,
        gallery: &dyn Gallery,
        model_id: &str,
    ) -> Result<Option<std::sync::Arc<TemplateIndex>>, Error> {
        if gallery.searches_in_place() {
            return Ok(None);
        }
        let revision = gallery.revision()?;
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cached
            .as_ref()
            .filter(|c| c.revision == revision && c.model_id == model_id)
        {
            return Ok(Some(c.index.clone()));
        }
        // Read the revision before the templates: a write in between only makes the next
        // call rebuild again, never serve stale results.
        let mut index = TemplateIndex::load(gallery, model_id)?;
        // Worth it for an index that serves many queries (not for a one-off CLI identify).
        index.prepare();
        let index = std::sync::Arc::new(index);
        *cached = Some(CachedIndex {
            revision,
            model_id: model_id.to_string(),
            index: index.clone(),
        });
        Ok(Some(index))
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct CompareOutcome {
    pub is_match: bool,
    pub distance: f32,
    pub distances: Distances,
    pub threshold: Threshold,
    pub model: String,
    pub face_a: Face,
    pub face_b: Face,
    pub faces_found_a: usize,
    pub faces_found_b: usize,
    pub estimated_far: Option<FarEstimate>,
    pub note: Option<String>,
    pub quality_a: QualityReport,
    pub quality_b: QualityReport,
    /// The liveness verdict on the first image's face, when liveness is checked; never part
    /// of `distance`.
    pub liveness: Option<LivenessScore>,
    /// `is_match`, and live when liveness was checked.
    pub accepted: bool,
}

/// Two photos, no gallery: the largest face of each.
pub fn compare(engine: &Engine, a: &LoadedImage, b: &LoadedImage) -> Result<CompareOutcome, Error> {
    let (mut fa, found_a) = engine.embed_faces(a, FacePolicy::Largest)?;
    let (mut fb, found_b) = engine.embed_faces(b, FacePolicy::Largest)?;
    let (fa, fb) = (fa.remove(0), fb.remove(0));
    let level = engine.options().verify_quality;
    let quality_a = engine.judge_quality(a, fa.quality.clone(), level)?;
    let quality_b = engine.judge_quality(b, fb.quality.clone(), level)?;
    let threshold = engine.threshold();
    let distances = Distances::between(&fa.embedding, &fb.embedding);
    let is_match = threshold.is_match(&distances);
    let liveness = engine.liveness(&a.rgb, &fa.face)?;
    let note = match (found_a > 1, found_b > 1) {
        (false, false) => None,
        _ => Some(format!(
            "{found_a} face(s) in the first image, {found_b} in the second; the largest of each was compared"
        )),
    };
    Ok(CompareOutcome {
        accepted: is_match && liveness.as_ref().is_none_or(|l| l.live),
        liveness,
        is_match,
        distance: distances.get(threshold.metric),
        distances,
        threshold,
        model: engine.model_id().to_string(),
        face_a: fa.face,
        face_b: fb.face,
        faces_found_a: found_a,
        faces_found_b: found_b,
        estimated_far: engine.estimated_far(distances.euclidean),
        note,
        quality_a,
        quality_b,
    })
}

/// A face of a photo and its distance to a reference.
#[derive(Clone, Debug, Serialize)]
pub struct FaceDistance {
    pub face: Face,
    pub distance: f32,
    pub is_match: bool,
}

/// Every face of a photo measured against one reference embedding, largest face first.
#[derive(Clone, Debug, Serialize)]
pub struct FacesAgainstReference {
    pub faces: Vec<FaceDistance>,
    /// The 1:1 threshold the matches were judged by.
    pub threshold: Threshold,
    pub model: String,
}

/// Every face of `image` against `reference` (an embedding of the engine's model), for APIs
/// that answer one similarity per face (CompreFace's verification).
pub fn faces_against(
    engine: &Engine,
    reference: &[f32],
    image: &LoadedImage,
) -> Result<FacesAgainstReference, Error> {
    let (embedded, _) = engine.embed_faces(image, FacePolicy::All)?;
    let threshold = engine.threshold();
    let mut faces: Vec<FaceDistance> = embedded
        .into_iter()
        .map(|f| {
            let distances = Distances::between(reference, &f.embedding);
            FaceDistance {
                face: f.face,
                distance: distances.get(threshold.metric),
                is_match: threshold.is_match(&distances),
            }
        })
        .collect();
    faces.sort_by(|a, b| b.face.area().total_cmp(&a.face.area()));
    Ok(FacesAgainstReference {
        faces,
        threshold,
        model: engine.model_id().to_string(),
    })
}

/// The one face of `source` (several: [`Error::SeveralFaces`]) against every face of
/// `target`: CompreFace's verification service.
pub fn one_against_all(
    engine: &Engine,
    source: &LoadedImage,
    target: &LoadedImage,
) -> Result<(Face, FacesAgainstReference), Error> {
    let (mut source_faces, _) = engine.embed_faces(source, FacePolicy::Single)?;
    let source_face = source_faces.remove(0);
    let against = faces_against(engine, &source_face.embedding, target)?;
    Ok((source_face.face, against))
}

/// Every face of a photo at least the minimum face size wide, with its quality figures.
#[derive(Clone, Debug, Serialize)]
pub struct Detection {
    pub faces: Vec<Face>,
    /// Per face, in the same order.
    pub quality: Vec<QualityReport>,
    /// The smallest face width searched for and kept (`--min-face-size`).
    pub min_face_size: u32,
}

/// Finds every face of `image` as verify and enroll would (with the same context retry and
/// the same minimum size), and measures each.
pub fn detect(engine: &Engine, image: &LoadedImage) -> Result<Detection, Error> {
    let min_face_size = engine.options().min_face_size;
    let faces: Vec<Face> = engine
        .detect_photo(&image.rgb)?
        .into_iter()
        .filter(|f| f.width() >= min_face_size as f32)
        .collect();
    let quality = faces
        .iter()
        .map(|f| QualityReport::measure(&image.rgb, f, faces.len()))
        .collect();
    Ok(Detection {
        faces,
        quality,
        min_face_size,
    })
}

/// Checks that every new face of `person` matches one of their enrolled `templates` at the 1:1
/// threshold; returns the largest of those distances (`None` when the person has no templates
/// yet: a first face has nothing to match). Refuses with [`Error::FaceMismatch`] naming the
/// first face that does not match: a face added to a name must be that person's.
pub fn check_new_faces_match(
    engine: &Engine,
    person: &str,
    templates: &[Template],
    new_faces: &[NewTemplate],
) -> Result<Option<f32>, Error> {
    if templates.is_empty() {
        return Ok(None);
    }
    let threshold = engine.threshold();
    let mut worst: Option<f32> = None;
    for face in new_faces {
        let Some((_, distances)) = closest(&face.embedding, templates, &threshold) else {
            continue;
        };
        let distance = distances.get(threshold.metric);
        if !threshold.is_match(&distances) {
            return Err(Error::FaceMismatch {
                source_name: face.source.clone(),
                person: person.to_string(),
                distance,
                threshold: threshold.value,
            });
        }
        worst = Some(worst.map_or(distance, |w: f32| w.max(distance)));
    }
    Ok(worst)
}

/// The template closest to `embedding` and the distances to it.
pub fn closest<'t>(
    embedding: &[f32],
    templates: &'t [Template],
    threshold: &Threshold,
) -> Option<(&'t Template, Distances)> {
    templates
        .iter()
        .map(|t| (t, Distances::between(embedding, &t.embedding)))
        .min_by(|a, b| {
            a.1.get(threshold.metric)
                .total_cmp(&b.1.get(threshold.metric))
        })
}

fn several_faces_note(found: usize, all_faces: bool) -> Option<String> {
    (found > 1 && !all_faces).then(|| {
        format!("{found} faces found; the largest was used (--all-faces reports every face)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use facegate_gallery::SqliteGallery;

    fn template(values: [f32; 2], sha: &str) -> NewTemplate {
        NewTemplate {
            embedding: values.to_vec(),
            image_sha256: sha.to_string(),
            bbox: [0.0; 4],
            detector_score: 1.0,
            source: sha.to_string(),
            quality: None,
        }
    }

    #[test]
    fn the_index_cache_follows_every_change_to_the_gallery() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.db");
        let gallery = SqliteGallery::open(&path).unwrap();
        let cache = IndexCache::default();
        gallery
            .enroll("ann", "m", &[template([1.0, 0.0], "a")])
            .unwrap();
        let first = cache.get(&gallery, "m").unwrap().unwrap();
        assert_eq!(first.len(), 1);
        assert!(std::sync::Arc::ptr_eq(
            &first,
            &cache.get(&gallery, "m").unwrap().unwrap()
        ));
        // A write by another connection (another process, say) is seen too.
        let other = SqliteGallery::open(&path).unwrap();
        other
            .enroll("bob", "m", &[template([0.0, 1.0], "b")])
            .unwrap();
        let second = cache.get(&gallery, "m").unwrap().unwrap();
        assert_eq!(second.len(), 2);
        assert_eq!(second.search(&[0.0, 1.0], 1)[0].person, "bob");
        other.forget("bob").unwrap();
        assert_eq!(cache.get(&gallery, "m").unwrap().unwrap().len(), 1);
    }
}
