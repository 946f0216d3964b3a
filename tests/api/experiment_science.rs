//! The claims of the experiment presets, checked through the API on the presets' own seeds
//! (three each): what the popular write-ups say about the cures of vanishing and exploding
//! gradients, measured. Each test submits `{"preset": NAME}` to `POST /v1/experiments`, waits
//! for the result and reads its rows: `grad_ratio_init` (geometric mean over the seeds of
//! first/last hidden weight-gradient norm at step 0), `final_loss` and `vs_baseline` (paired
//! differences against the baseline, seed by seed, with a 95% paired t interval).

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{spawn_with, TestApp};

/// Runs the experiment preset `name` to the end and returns the experiment.
async fn run_preset(app: &TestApp, name: &str) -> Value {
    let res = app.post_json("/v1/experiments", &json!({"preset": name})).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED, "{:?}", res.text().await);
    let e: Value = res.json().await.unwrap();
    let id = e["id"].as_str().unwrap().to_owned();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(600);
    loop {
        let e: Value = app.get(&format!("/v1/experiments/{id}")).await.json().await.unwrap();
        if e["status"] != "queued" && e["status"] != "running" {
            assert_eq!(e["status"], "succeeded", "{e}");
            eprintln!("{name}: {:.1} s wall time on this machine", started.elapsed().as_secs_f64());
            return e;
        }
        assert!(Instant::now() < deadline, "{name} did not finish: {}", e["progress"]);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn row<'a>(e: &'a Value, variant: &str) -> &'a Value {
    e["result"]["variants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == variant)
        .unwrap_or_else(|| panic!("no variant {variant} in {}", e["result"]["ranking"]))
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("expected a number, got {v}"))
}

/// The server of these tests: two workers, as the machine has two cores.
async fn app() -> TestApp {
    spawn_with(&[("--workers", "2"), ("--job-timeout-secs", "600"), ("--queue-capacity", "64")]).await
}

#[tokio::test]
async fn each_cure_of_a_deep_sigmoid_stack_raises_the_gradient_ratio_and_lowers_the_loss_but_small_init_and_clipping_do_not(
) {
    let app = app().await;
    let e = run_preset(&app, "rescue-deep-sigmoid").await;
    let base = row(&e, "baseline");
    let base_ratio = num(&base["grad_ratio_init"]["geo_mean"]);
    assert!(base_ratio < 1e-6, "the baseline vanishes: ratio {base_ratio:e}");
    for cure in ["he-relu", "batch-norm", "residual"] {
        let r = row(&e, cure);
        let ratio = num(&r["grad_ratio_init"]["geo_mean"]);
        assert!(ratio >= 100.0 * base_ratio, "{cure}: ratio {ratio:e} vs baseline {base_ratio:e}");
        // Seed by seed: at least two decades more, at the lower end of the paired interval.
        assert!(num(&r["vs_baseline"]["log10_grad_ratio_init"]["low"]) >= 2.0, "{cure}: {}", r["vs_baseline"]);
        // A lower final loss on the same seeds, with a paired interval that excludes 0.
        let d = &r["vs_baseline"]["final_loss"];
        assert!(d["excludes_zero"] == true && num(&d["high"]) < 0.0, "{cure}: final loss - baseline's = {d}");
        assert_eq!(d["n_pairs"], 3, "{cure}");
    }
    // "Initialise the weights very small": the gradient vanishes further.
    let small = row(&e, "small-init");
    let small_ratio = num(&small["grad_ratio_init"]["geo_mean"]);
    assert!(small_ratio < base_ratio, "small init: ratio {small_ratio:e} vs baseline {base_ratio:e}");
    assert!(num(&small["vs_baseline"]["log10_grad_ratio_init"]["high"]) < 0.0, "{}", small["vs_baseline"]);
    // Clipping bounds large gradients; it cannot enlarge vanishing ones.
    let clip = row(&e, "clip");
    let clip_ratio = num(&clip["grad_ratio_init"]["geo_mean"]);
    assert!((clip_ratio / base_ratio - 1.0).abs() <= 0.1, "clip: ratio {clip_ratio:e} vs baseline {base_ratio:e}");
    let d = &clip["vs_baseline"]["final_loss"];
    assert!(!(d["excludes_zero"] == true && num(&d["mean"]) < 0.0), "clipping improved the loss: {d}");
    // The ranking puts the three cures ahead of the baseline, small init and clipping.
    let ranking: Vec<&str> = e["result"]["ranking"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    let mut top: Vec<&str> = ranking[..3].to_vec();
    top.sort();
    assert_eq!(top, ["batch-norm", "he-relu", "residual"], "{ranking:?}");
}

#[tokio::test]
async fn without_clipping_the_exploding_rnn_diverges_and_with_clipping_it_stays_finite_on_every_seed() {
    let app = app().await;
    let e = run_preset(&app, "clipping-exploding-rnn").await;
    let base = row(&e, "baseline");
    let clip = row(&e, "clip");
    assert_eq!(clip["non_finite"], 0, "{clip}");
    assert_eq!(clip["n"], 3);
    // Every seed diverges without clipping (docs/experiments.md and README say so).
    assert_eq!(base["non_finite"], 3, "without clipping: {}", base["final_loss"]);
    assert_eq!(e["result"]["ranking"][0], "clip");
}

#[tokio::test]
async fn a_gated_cell_beats_the_vanilla_rnn_on_the_adding_problem_by_a_paired_interval() {
    let app = app().await;
    let e = run_preset(&app, "rnn-cells").await;
    let length = e["result"]["variants"][0]["name"].clone();
    assert_eq!(length, "baseline");
    let first = e["result"]["ranking"][0].as_str().unwrap().to_owned();
    assert!(first == "lstm" || first == "gru", "ranked first: {first}");
    let d = &row(&e, &first)["vs_baseline"]["final_loss"];
    assert!(d["excludes_zero"] == true && num(&d["high"]) < 0.0, "{first} - vanilla = {d}");
    assert!(num(&row(&e, &first)["final_loss"]["mean"]) < 0.05, "the adding baseline is 0.167");
    // The vanilla RNN stays near the baseline of predicting the mean (1/6).
    assert!(num(&row(&e, "baseline")["final_loss"]["mean"]) > 0.12, "{}", row(&e, "baseline")["final_loss"]);
    // The sequences are long enough to be the classic test (T >= 50).
    let job = e["variants"][0]["runs"][0]["job_id"].as_str().unwrap();
    let report: Value = app.get(&format!("/v1/jobs/{job}/report")).await.json().await.unwrap();
    assert!(report["spec"]["data"]["length"].as_u64().unwrap() >= 50);
}

#[tokio::test]
async fn relu_with_he_init_is_the_best_cell_of_the_init_activation_grid_and_sigmoid_cells_vanish() {
    let app = app().await;
    let e = run_preset(&app, "init-vs-activation").await;
    let result = &e["result"];
    let best = &result["best_cell"];
    let relu_he = "activation=relu, init=he_normal";
    let r = row(&e, relu_he);
    assert!(best["name"] == relu_he || r["distinguishable_from_best"] == false, "best: {best}, relu+he: {r}");
    for cell in ["activation=sigmoid, init=xavier_uniform", "activation=sigmoid, init=he_normal"] {
        let ratio = num(&row(&e, cell)["grad_ratio_init"]["geo_mean"]);
        assert!(ratio < 1e-4, "{cell}: ratio {ratio:e}");
        // ... and stay at chance: ln 2 = 0.693 for two classes.
        let loss = num(&row(&e, cell)["final_loss"]["mean"]);
        assert!(loss > 0.65, "{cell}: loss {loss}");
    }
    assert_eq!(result["main_effects"].as_array().unwrap().len(), 2);
    assert!(result["heatmap"].is_object());
}

/// Runs `{"remedies_of": <job>}` to the end, `job` being a finished job of preset `name` with
/// its seed replaced by `seed`; returns the experiment.
async fn remedies_of_preset(app: &TestApp, name: &str, seed: u64) -> Value {
    let mut spec = app.get(&format!("/v1/presets/{name}")).await.json::<Value>().await.unwrap();
    spec["seed"] = seed.into();
    let job = app.submit(&spec).await;
    let job_id = job["id"].as_str().unwrap().to_owned();
    // The deadline of the experiments here, not `wait_for_status`'s 20 s: the suite's other
    // experiments share the two cores (a 500-step job with its verification runs takes ~3 s alone).
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let j = app.job(&job_id).await;
        if j["status"] != "queued" && j["status"] != "running" {
            assert_eq!(j["status"], "succeeded", "{j}");
            break;
        }
        assert!(Instant::now() < deadline, "job {job_id} did not finish: {}", j["progress"]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let res = app.post_json("/v1/experiments", &json!({"remedies_of": job_id})).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED, "{:?}", res.text().await);
    let e: Value = res.json().await.unwrap();
    let id = e["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let e: Value = app.get(&format!("/v1/experiments/{id}")).await.json().await.unwrap();
        if e["status"] != "queued" && e["status"] != "running" {
            assert_eq!(e["status"], "succeeded", "{e}");
            return e;
        }
        assert!(Instant::now() < deadline, "remedies of {name} did not finish: {}", e["progress"]);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// README's walkthrough, step 7: the remedies of a `deep-sigmoid-vanishing` job, compared over
/// three seeds, rank batch norm ahead of the unchanged spec: from the walkthrough's job (seed 7:
/// experiment seeds 7, 8, 9) first, by a paired interval that excludes zero; from another (seed
/// 1: seeds 1, 2, 3) second after ReLU + He, lower on average but within noise.
#[tokio::test]
async fn the_remedies_of_the_deep_sigmoid_preset_put_batch_norm_ahead_of_the_baseline() {
    const BATCH_NORM: &str = "Add batch norm to each hidden dense layer";
    let app = app().await;
    for seed in [7, 1] {
        let e = remedies_of_preset(&app, "deep-sigmoid-vanishing", seed).await;
        let ranking: Vec<&str> =
            e["result"]["ranking"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        let at = |name: &str| ranking.iter().position(|r| *r == name);
        assert!(at(BATCH_NORM) < at("baseline"), "seed {seed}: {ranking:?}");
        if seed == 7 {
            // README shows this ranking: the other two cures below the unchanged spec.
            assert_eq!(ranking[..2], [BATCH_NORM, "baseline"], "the walkthrough's ranking: {ranking:?}");
        }
        let bn = row(&e, BATCH_NORM);
        assert_eq!(bn["n"], 3, "seed {seed}");
        let d = &bn["vs_baseline"]["final_loss"];
        assert!(num(&d["mean"]) < 0.0, "seed {seed}: batch norm - baseline = {d}");
        if seed == 7 {
            // A lower final loss than the unchanged spec's seed by seed, by a paired interval.
            assert!(d["excludes_zero"] == true && num(&d["high"]) < 0.0, "batch norm - baseline = {d}");
        } else {
            // Seeds 1, 2, 3: lower on average, but seed 1's noisy run keeps the interval
            // across zero: the rank alone overstates it, and README says so.
            assert!(d["excludes_zero"] == false, "batch norm - baseline = {d}");
        }
    }
}
