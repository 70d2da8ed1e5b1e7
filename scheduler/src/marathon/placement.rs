//! Placement: how many instances of an app one offer can take, each with which resources and
//! host ports, under the app's constraints. Pure: the launch queue asks it for every offer.
//!
//! Owns the meaning of Marathon's constraints here, on `hostname` or an agent attribute
//! (`rack:r1` → field `rack`, value `r1`): UNIQUE (no two instances on agents with one value),
//! CLUSTER (only on agents with this value), GROUP_BY (spread evenly over the values: no value
//! gets more than one instance ahead of the least-used other; with a count, until that many
//! values are used, an unused value first), MAX_PER (at most n per
//! value), LIKE / UNLIKE (the value matches, or does not match, the whole regular
//! expression). An agent without the attribute satisfies only UNLIKE.
//!
//! Host ports: with `requirePorts` each instance takes exactly its definitions' ports (so at
//! most one instance per agent); otherwise any free ports of the offer, lowest first; a
//! container app's published port mappings likewise (a fixed `hostPort`, or any). An app with
//! a Docker container goes only to agents whose `containerizers` attribute names docker.

use std::collections::BTreeMap;

use drover_model::container::{runs_docker, CONTAINERIZERS_ATTRIBUTE};
use drover_resources::{Attributes, Ranges, Resources};

use super::app::{AppDefinition, Constraint, Operator};

/// An agent as placement sees it.
#[derive(Clone, Copy, Debug)]
pub struct Agent<'a> {
    pub hostname: &'a str,
    pub attributes: &'a Attributes,
}

impl Agent<'_> {
    /// Whether the agent runs Docker containers (its `containerizers` attribute).
    fn runs_containers(&self) -> bool {
        self.attributes
            .get(CONTAINERIZERS_ATTRIBUTE)
            .is_some_and(|v| runs_docker(&v.to_string()))
    }

    /// The agent's value for a constraint's field.
    fn value(&self, field: &str) -> Option<String> {
        if field == "hostname" {
            Some(self.hostname.to_string())
        } else {
            self.attributes.get(field).map(|v| v.to_string())
        }
    }
}

/// One instance to launch: what it takes from the offer.
#[derive(Clone, Debug, PartialEq)]
pub struct Launch {
    /// cpus, mem, disk and the host ports below.
    pub resources: Resources,
    /// Host ports, one per port definition, in order.
    pub ports: Vec<u64>,
}

/// Why an app cannot be placed at all (its definition asks for impossible resources).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the app's resources cannot be expressed: {0}")]
pub struct BadResources(String);

/// Up to `wanted` instances of `app` on `agent` from `offered`, given the agents its live
/// instances run on (`placed`, one entry per instance).
pub fn place(
    app: &AppDefinition,
    agent: Agent<'_>,
    offered: &Resources,
    placed: &[Agent<'_>],
    wanted: usize,
) -> Result<Vec<Launch>, BadResources> {
    let scalars = Resources::from_scalars(app.cpus, app.mem, app.disk)
        .map_err(|e| BadResources(e.to_string()))?;
    let mut left = offered.clone();
    let mut values: Vec<Vec<Option<String>>> = app
        .constraints
        .iter()
        .map(|c| placed.iter().map(|a| a.value(&c.field)).collect())
        .collect();
    // This agent's value for each constraint's field, read once.
    let mine: Vec<Option<String>> = app
        .constraints
        .iter()
        .map(|c| agent.value(&c.field))
        .collect();
    let mut launches = Vec::new();
    if app.docker_container().is_some() && !agent.runs_containers() {
        return Ok(launches);
    }
    while launches.len() < wanted {
        let fits_constraints = app
            .constraints
            .iter()
            .zip(&mine)
            .zip(&values)
            .all(|((c, value), seen)| allows(c, value.as_deref(), seen));
        if !fits_constraints || !left.contains(&scalars) {
            break;
        }
        let Some(ports) = host_ports(app, &left.ports()) else {
            break;
        };
        let port_ranges = Ranges::new(ports.iter().map(|p| (*p, *p)))
            .map_err(|e| BadResources(format!("ports: {e}")))?;
        let resources = scalars
            .clone()
            .with_ranges("ports", port_ranges)
            .map_err(|e| BadResources(e.to_string()))?;
        let Ok(rest) = left.checked_sub(&resources) else {
            break;
        };
        left = rest;
        for (value, seen) in mine.iter().zip(values.iter_mut()) {
            seen.push(value.clone());
        }
        launches.push(Launch { resources, ports });
    }
    Ok(launches)
}

/// The host ports one instance takes from `free`, or `None` if they are not there: each
/// fixed one (`requirePorts`, a mapping's `hostPort`) must be free, the others are the lowest
/// free ports besides.
fn host_ports(app: &AppDefinition, free: &Ranges) -> Option<Vec<u64>> {
    let requests = app.host_port_requests();
    let fixed: Vec<u64> = requests.iter().flatten().copied().collect();
    if !fixed.iter().all(|p| free.contains_value(*p)) {
        return None;
    }
    let mut any = free.values().filter(|p| !fixed.contains(p));
    requests
        .iter()
        .map(|r| match r {
            Some(p) => Some(*p),
            None => any.next(),
        })
        .collect()
}

/// Whether one more instance on an agent whose value is `value` keeps constraint `c`, given
/// the values of the agents the app's instances run on (`seen`).
fn allows(c: &Constraint, value: Option<&str>, seen: &[Option<String>]) -> bool {
    let same = |v: &str| seen.iter().filter(|s| s.as_deref() == Some(v)).count();
    match (&c.operator, value) {
        (Operator::Unlike(_), None) => true,
        (_, None) => false,
        (Operator::Unique, Some(v)) => same(v) == 0,
        (Operator::Cluster(want), Some(v)) => v == want,
        (Operator::MaxPer(n), Some(v)) => same(v) < *n as usize,
        (Operator::Like(pattern), Some(v)) => pattern.matches(v),
        (Operator::Unlike(pattern), Some(v)) => !pattern.matches(v),
        (Operator::GroupBy(groups), Some(v)) => {
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for s in seen.iter().flatten() {
                *counts.entry(s.as_str()).or_default() += 1;
            }
            let mine = counts.remove(v);
            match (groups, mine) {
                // Fewer values used than asked for: an unused one first.
                (Some(n), mine) if counts.len() + usize::from(mine.is_some()) < *n as usize => {
                    mine.is_none()
                }
                // Otherwise no value gets more than one ahead of the least used.
                (_, mine) => counts
                    .values()
                    .min()
                    .is_none_or(|fewest| mine.unwrap_or(0) <= *fewest),
            }
        }
    }
}

#[cfg(test)]
mod tests;
