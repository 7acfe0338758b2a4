//! What a challenge asks for.

use rand::seq::IndexedRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// One request of a challenge. Directions are named as seen in the image: `Left` = the nose
/// moves toward the image's left edge. A live page that shows a mirrored preview maps them to
/// what the user sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    Left,
    Right,
    Up,
    Down,
    /// Close both eyes briefly and open them again. Judged on eyelid landmarks, which the
    /// five-point detector does not give: the caller must supply eye openness (see
    /// [`crate::blink`]).
    Blink,
}

/// Head movements: judged on the five landmarks alone.
pub const MOVEMENTS: [Step; 4] = [Step::Left, Step::Right, Step::Up, Step::Down];
/// Every step, the blink included.
pub const ALL: [Step; 5] = [Step::Left, Step::Right, Step::Up, Step::Down, Step::Blink];

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::Left => "left",
            Step::Right => "right",
            Step::Up => "up",
            Step::Down => "down",
            Step::Blink => "blink",
        }
    }

    /// Whether the step is a head movement (not a blink).
    pub fn is_movement(self) -> bool {
        MOVEMENTS.contains(&self)
    }

    /// A comma-separated list (`left,right,blink`).
    pub fn parse_list(text: &str) -> Result<Vec<Step>, String> {
        let steps = text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| match s.to_ascii_lowercase().as_str() {
                "left" => Ok(Step::Left),
                "right" => Ok(Step::Right),
                "up" => Ok(Step::Up),
                "down" => Ok(Step::Down),
                "blink" => Ok(Step::Blink),
                other => Err(format!(
                    "unknown challenge step {other:?}: use left, right, up, down, blink"
                )),
            })
            .collect::<Result<Vec<Step>, String>>()?;
        if steps.is_empty() {
            return Err(
                "a challenge needs at least one step (left, right, up, down, blink)".into(),
            );
        }
        if steps.windows(2).any(|w| w[0] == w[1]) {
            return Err(
                "a step cannot follow itself (left,left): ask for another step in between".into(),
            );
        }
        Ok(steps)
    }

    /// `count` steps drawn at random from `choices`, never the same twice in a row (with one
    /// choice, only the first step).
    pub fn random(rng: &mut impl Rng, count: usize, choices: &[Step]) -> Vec<Step> {
        let mut steps: Vec<Step> = Vec::with_capacity(count);
        while steps.len() < count {
            let allowed: Vec<Step> = choices
                .iter()
                .copied()
                .filter(|s| steps.last() != Some(s))
                .collect();
            match allowed.choose(rng) {
                Some(&step) => steps.push(step),
                None => break,
            }
        }
        steps
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_parsed_and_refused_with_reasons() {
        assert_eq!(
            Step::parse_list("left, RIGHT,up").unwrap(),
            [Step::Left, Step::Right, Step::Up]
        );
        assert!(Step::parse_list("left,left").is_err());
        assert_eq!(
            Step::parse_list("blink,up").unwrap(),
            [Step::Blink, Step::Up]
        );
        assert!(Step::parse_list("sideways").is_err());
        assert!(Step::parse_list(" , ").is_err());
    }

    #[test]
    fn random_challenges_use_every_step_and_never_repeat_one() {
        let mut rng = rand::rng();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let steps = Step::random(&mut rng, 4, &ALL);
            assert_eq!(steps.len(), 4);
            assert!(steps.windows(2).all(|w| w[0] != w[1]));
            seen.extend(steps);
        }
        assert_eq!(seen.len(), ALL.len());
        let moves = Step::random(&mut rng, 50, &MOVEMENTS);
        assert!(moves.iter().all(|s| s.is_movement()));
        assert_eq!(Step::random(&mut rng, 3, &[Step::Blink]), [Step::Blink]);
    }
}
