//! LLB definitions as BuildKit hands them back -> `Graph::add_definition`, `base::find_root`
//! and `squash::plan` in every mode x method x engine (DiffOp/MergeOp on and off) x tool
//! (given or not). Input: two header bytes picking the image config and base config (see
//! `squash_fuzz::pick_config`), then a protobuf `pb::Definition`. Each input is tried twice:
//! as decoded, and re-linked (`squash_fuzz::relink`) so that mutated ops still form a graph
//! whose digests check out, which random bytes almost never do.
//!
//! Asserts, besides "no panic":
//! - `add_definition` returns `Ok(None)` only for an empty definition, and a head that is in the
//!   graph; an image root `find_root` reports is an image source op of the graph;
//! - `plan` never fails on a graph and configs that were accepted (only `NoDiff`/`NoTool`, and
//!   only in base mode), and mode `off` is always `Unchanged`;
//! - when a plan says `Squash`: every op of its definition decodes, every op input digest (the
//!   terminal's included) is an op of the definition, the last op is a terminal with one input,
//!   and a fresh `Graph` takes the definition; its root is `Scratch` one step up for a full
//!   squash and an image source for a base-keeping one; its config (if any) is JSON whose
//!   layer count is 1 (full) or base layers + 1 (base kept).

#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use squash_frontend::base::{self, Root};
use squash_frontend::config;
use squash_frontend::llb::Graph;
use squash_frontend::plan::{self, Inputs, Plan, PlanError, Received, Squash};
use squash_frontend::request::{Method, Mode};
use squash_frontend::testkit;
use squash_proto::pb;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let cfg = squash_fuzz::pick_config(data[0], false);
    let base_cfg = squash_fuzz::pick_config(data[1], true);
    let Ok(def) = pb::Definition::decode(&data[2..]) else {
        return;
    };
    check(&def, cfg.as_deref(), base_cfg.as_deref());
    if let Some(relinked) = squash_fuzz::relink(&def) {
        check(&relinked, cfg.as_deref(), base_cfg.as_deref());
    }
});

fn check(def: &pb::Definition, cfg: Option<&[u8]>, base_cfg: Option<&[u8]>) {
    let mut graph = Graph::default();
    let head = match graph.add_definition(def) {
        Ok(Some(head)) => head,
        Ok(None) => {
            assert!(def.def.is_empty(), "no head from {} ops", def.def.len());
            return;
        }
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    assert!(graph.op(&head.digest).is_some(), "head not in the graph");
    let lineage = base::find_root(&graph, &head);
    if let Root::Image { output, .. } = &lineage.root {
        let op = graph.op(&output.digest).expect("image root in the graph");
        assert!(
            matches!(op.op, Some(pb::op::Op::Source(_))),
            "image root is not a source op"
        );
    }

    let tool = testkit::tool();
    let base_layers = base_cfg.and_then(config::Base::read).map(|b| b.layers);
    for mode in [Mode::Full, Mode::Base, Mode::Off] {
        for method in [Method::Auto, Method::Diff, Method::Sync] {
            for diff_caps in [false, true] {
                let caps = testkit::caps(diff_caps);
                for tool in [None, Some(&tool)] {
                    let inputs = Inputs {
                        mode,
                        method,
                        caps: &caps,
                        tool,
                        epoch: None,
                        no_cache: false,
                        min_saving: None,
                        split: None,
                        report: true,
                    };
                    let received = Received::decode(def, cfg, base_cfg).expect("the graph took");
                    match plan::plan(received, &inputs) {
                        Ok(Plan::Unchanged { .. }) => {}
                        Ok(Plan::Squash(Squash {
                            def: out,
                            config: out_cfg,
                            keeps_base,
                            ..
                        })) => {
                            assert_ne!(mode, Mode::Off, "squashed with mode off");
                            // With the report on, every plan is ready to solve.
                            let plan::Def::Ready(out) = out else {
                                panic!("a plan that reads first, with the report on")
                            };
                            let (g2, head2) = squash_fuzz::check_planned_definition(&out);
                            let lin = base::find_root(&g2, &head2);
                            if keeps_base {
                                assert_eq!(mode, Mode::Base);
                                assert!(
                                    matches!(lin.root, Root::Image { .. }),
                                    "base kept but the root is {:?}",
                                    lin.root
                                );
                            } else {
                                // Full mode: a copy onto scratch, or (with DiffOp and a method
                                // other than sync) a diff against an empty root.
                                let by_diff = diff_caps && method != Method::Sync;
                                let want = if by_diff {
                                    (Root::Other("a diff".into()), 0)
                                } else {
                                    (Root::Scratch, 1)
                                };
                                assert_eq!((lin.root, lin.steps), want);
                            }
                            if let Some(c) = out_cfg {
                                let _: serde_json::Value =
                                    serde_json::from_slice(&c).expect("planned config is JSON");
                                let want = if keeps_base {
                                    base_layers.expect("base kept without a base config") + 1
                                } else {
                                    1
                                };
                                assert_eq!(
                                    config::count_layers(&c, None).map(|l| l.total()),
                                    Ok(want)
                                );
                            }
                        }
                        Err(e) => {
                            assert!(
                                mode == Mode::Base
                                    || (mode == Mode::Full && method == Method::Diff && !diff_caps),
                                "{mode:?}: {e}"
                            );
                            assert!(
                                matches!(e, PlanError::NoDiff { .. } | PlanError::NoTool),
                                "plan failed on an accepted graph: {e}"
                            );
                        }
                    }
                }
            }
        }
    }
}
