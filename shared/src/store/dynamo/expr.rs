//! Expression placeholders: every attribute name and value of a request goes through one.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::items::Item;

// ---------------------------------------------------------------------------------------------
// Expressions and errors.

/// Collects the placeholders of one request's expressions. Every attribute name goes through a
/// `#` placeholder, so no name can collide with one of DynamoDB's reserved words.
#[derive(Default)]
pub(super) struct Expr {
    names: HashMap<String, String>,
    values: Item,
}

impl Expr {
    pub(super) fn name(&mut self, attribute: &str) -> String {
        if let Some((placeholder, _)) = self.names.iter().find(|(_, a)| *a == attribute) {
            return placeholder.clone();
        }
        let placeholder = format!("#n{}", self.names.len());
        self.names.insert(placeholder.clone(), attribute.to_owned());
        placeholder
    }

    pub(super) fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    /// `#a = :x, #b = :y` for a SET clause.
    pub(super) fn assignments(&mut self, attributes: Vec<(&str, AttributeValue)>) -> String {
        attributes
            .into_iter()
            .map(|(attribute, value)| format!("{} = {}", self.name(attribute), self.value(value)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `#a, #b` for a REMOVE clause.
    pub(super) fn names_list(&mut self, attributes: &[&str]) -> String {
        attributes
            .iter()
            .map(|attribute| self.name(attribute))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub(super) fn into_parts(self) -> (Option<HashMap<String, String>>, Option<Item>) {
        let names = (!self.names.is_empty()).then_some(self.names);
        let values = (!self.values.is_empty()).then_some(self.values);
        (names, values)
    }
}
