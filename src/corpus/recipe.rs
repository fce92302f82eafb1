//! How a generated case is made: its template fixture case, the prediction's new shape, how its
//! labels and values are drawn, and the seed. A recipe is the whole case: the same recipe makes
//! the same tensors on every machine.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How class labels (and binary targets) are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Labels {
    /// Every position's label uniform over the classes; 10% ignored where the template ignores.
    Uniform,
    /// VOC-like: square regions of one class (32 px, 16 in 3-D), their borders and the image's
    /// ignored (2 px) where the template ignores; binary targets 30% foreground.
    Regions,
    /// Class 0 at 90% of the positions; binary targets 2% foreground.
    Imbalanced,
    /// Only classes 0–2 present, the others empty; binary targets all background.
    FewClasses,
    /// Every position ignored where the template ignores (a mean over nothing).
    Ignored,
}

impl Labels {
    /// Every scenario, in the order shrinking tries them (simplest first).
    pub const ALL: [Labels; 5] = [
        Labels::Uniform,
        Labels::Regions,
        Labels::Imbalanced,
        Labels::FewClasses,
        Labels::Ignored,
    ];

    /// The scenario's name, as case ids carry it.
    pub fn name(self) -> &'static str {
        match self {
            Labels::Uniform => "uniform",
            Labels::Regions => "regions",
            Labels::Imbalanced => "imbalanced",
            Labels::FewClasses => "few_classes",
            Labels::Ignored => "ignored",
        }
    }
}

/// How the prediction's (and other real-valued tensors') values are drawn within the template's
/// range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueStyle {
    /// Uniform in the range.
    Uniform,
    /// Uniform, with a quarter of the values at the range's ends (and 0 within it): ties and
    /// extremes.
    Edges,
    /// Five levels across the range: the simplest values, for shrinking.
    Coarse,
}

impl ValueStyle {
    /// The style's name, as case ids carry it.
    pub fn name(self) -> &'static str {
        match self {
            ValueStyle::Uniform => "uniform",
            ValueStyle::Edges => "edges",
            ValueStyle::Coarse => "coarse",
        }
    }
}

/// A generated case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipe {
    /// The fixture case whose loss, parameters and kinds of tensors it takes.
    pub template: String,
    /// Parameters set on top of the template's (a realistic `ignore_index=255`, say).
    pub params: BTreeMap<String, Value>,
    /// The prediction's shape.
    pub shape: Vec<usize>,
    /// How labels are drawn.
    pub labels: Labels,
    /// How values are drawn.
    pub values: ValueStyle,
    /// The seed of every random value.
    pub seed: u64,
    /// Appended to the id (`#r17`) where several recipes could otherwise share one.
    pub tag: Option<String>,
}

impl Recipe {
    /// The case id: the template's, with the new shape in its shape segment and the scenario
    /// after its variant (`cross_entropy/f32/N8C21H512W512/mean/ignore_index=1+regions`), so that
    /// the tolerance and artefact rules written for the template's id apply.
    pub fn id(&self) -> String {
        let mut parts: Vec<String> = self.template.split('/').map(str::to_string).collect();
        if parts.len() == 5 {
            parts[2] = shape_token(&parts[2], &self.shape);
            for (name, value) in &self.params {
                parts[4] = format!("{}+{name}={value}", parts[4]);
            }
            parts[4] = format!("{}+{}", parts[4], self.labels.name());
            if self.values != ValueStyle::Uniform {
                parts[4] = format!("{}+{}", parts[4], self.values.name());
            }
        }
        let id = parts.join("/");
        match &self.tag {
            Some(tag) => format!("{id}#{tag}"),
            None => id,
        }
    }

    /// The elements of the prediction.
    pub fn elements(&self) -> usize {
        self.shape.iter().product()
    }
}

impl fmt::Display for Recipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "template {}, params {}, shape {:?}, labels {}, values {}, seed {}",
            self.template,
            Value::from_iter(self.params.clone()),
            self.shape,
            self.labels.name(),
            self.values.name(),
            self.seed
        )
    }
}

/// The shape token of `template` (`N2C3H3W4`: one capital letter per axis) with the sizes of
/// `shape`; `S8x21x512x512` when the template's token does not name every axis.
fn shape_token(template: &str, shape: &[usize]) -> String {
    let letters: Vec<char> = template.chars().filter(char::is_ascii_uppercase).collect();
    if letters.len() == shape.len() {
        letters
            .iter()
            .zip(shape)
            .map(|(letter, size)| format!("{letter}{size}"))
            .collect()
    } else {
        let sizes: Vec<String> = shape.iter().map(usize::to_string).collect();
        format!("S{}", sizes.join("x"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_keeps_the_template_and_names_the_scenario() {
        let recipe = Recipe {
            template: "cross_entropy/f32/N2C3H3W4/mean/ignore_index=1".into(),
            params: BTreeMap::new(),
            shape: vec![8, 21, 512, 512],
            labels: Labels::Regions,
            values: ValueStyle::Uniform,
            seed: 1,
            tag: None,
        };
        assert_eq!(
            recipe.id(),
            "cross_entropy/f32/N8C21H512W512/mean/ignore_index=1+regions"
        );
        let edges = Recipe {
            values: ValueStyle::Edges,
            shape: vec![2, 3, 4],
            params: BTreeMap::from([("ignore_index".to_string(), Value::from(255))]),
            tag: Some("r3".into()),
            ..recipe
        };
        assert_eq!(
            edges.id(),
            "cross_entropy/f32/S2x3x4/mean/ignore_index=1+ignore_index=255+regions+edges#r3"
        );
    }
}
