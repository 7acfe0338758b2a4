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
    /// Close both eyes briefly. Needs eyelid landmarks, which the five-point detector does not
    /// give: not available yet (see [`Step::available`]).
    Blink,
}

/// The steps facegate can judge today: head movements.
pub const AVAILABLE: [Step; 4] = [Step::Left, Step::Right, Step::Up, Step::Down];

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

    /// Whether this version can judge the step.
    pub fn available(self) -> bool {
        AVAILABLE.contains(&self)
    }

    /// A comma-separated list (`left,right,up`), each step one this version can judge.
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
                "blink" => Err("blink is not available yet: facegate's five landmarks cannot see eyelids; use left, right, up, down".to_string()),
                other => Err(format!("unknown challenge step {other:?}: use left, right, up, down")),
            })
            .collect::<Result<Vec<Step>, String>>()?;
        if steps.is_empty() {
            return Err("a challenge needs at least one step (left, right, up, down)".into());
        }
        if steps.windows(2).any(|w| w[0] == w[1]) {
            return Err(
                "a step cannot follow itself (left,left): ask for another movement in between"
                    .into(),
            );
        }
        Ok(steps)
    }

    /// `count` steps drawn at random from the available ones, never the same twice in a row.
    pub fn random(rng: &mut impl Rng, count: usize) -> Vec<Step> {
        let mut steps: Vec<Step> = Vec::with_capacity(count);
        while steps.len() < count {
            let choices: Vec<Step> = AVAILABLE
                .iter()
                .copied()
                .filter(|s| steps.last() != Some(s))
                .collect();
            if let Some(&step) = choices.choose(rng) {
                steps.push(step);
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
        assert!(Step::parse_list("blink")
            .unwrap_err()
            .contains("not available"));
        assert!(Step::parse_list("sideways").is_err());
        assert!(Step::parse_list(" , ").is_err());
    }

    #[test]
    fn random_challenges_use_every_step_and_never_repeat_one() {
        let mut rng = rand::rng();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let steps = Step::random(&mut rng, 4);
            assert_eq!(steps.len(), 4);
            assert!(steps.windows(2).all(|w| w[0] != w[1]));
            seen.extend(steps);
        }
        assert_eq!(seen.len(), AVAILABLE.len());
    }
}
