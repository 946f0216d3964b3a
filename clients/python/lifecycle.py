"""A job's and an experiment's whole life against a live server, through the Python client that
openapi-python-client generates from openapi/openapi.json, and nothing else: no hand-written
HTTP, no raw JSON bodies. Requests are built from the generated models and answers read as them.

Usage (clients/python/run.sh does all of it):

    PYTHONPATH=DIR_OF_gradscope_client GRADSCOPE_URL=http://127.0.0.1:PORT \
    GRADSCOPE_TOKEN=TOKEN python clients/python/lifecycle.py

The server must accept the token (GRADSCOPE_API_TOKENS); its limits may be as small as .ci/run's.
Each step asserts what the API promises; the last line counts the steps that passed.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from typing import Any, Callable

import httpx

from gradscope_client import AuthenticatedClient, Client
from gradscope_client.api.analyze import analyze
from gradscope_client.api.experiments import (
    create_experiment,
    get_experiment,
    get_experiment_plot,
    stream_experiment_events,
)
from gradscope_client.api.jobs import (
    cancel_job,
    create_job,
    delete_job,
    get_job,
    get_job_plot,
    get_job_report,
    get_job_report_html,
    list_jobs,
    stream_job_events,
)
from gradscope_client.api.operations import metrics, readyz
from gradscope_client.api.presets import get_preset, list_presets
from gradscope_client.models import (
    ActivationLeakyRelu,
    ActivationLeakyReluType,
    ActivationName,
    ClipGlobalNorm,
    ClipGlobalNormType,
    DataBlobs,
    DataBlobsType,
    DataXor,
    DataXorType,
    Dense,
    DenseType,
    DiagnosticCode,
    ExperimentPlot,
    ExperimentRequest,
    ExperimentResource,
    ExperimentStatusEvent,
    ExperimentStatusEventEvent,
    InitName,
    InitXavierUniform,
    InitXavierUniformType,
    JobList,
    JobProgress,
    JobProgressEvent,
    JobProgressEventEvent,
    JobResource,
    JobStatus,
    JobStatusEvent,
    JobStatusEventEvent,
    Loss,
    Mlp,
    MlpType,
    Model,
    NamedPatch,
    NamedPatchPatchItem,
    NormName,
    OptimizerAdam,
    OptimizerAdamType,
    OptimizerName,
    PlotName,
    PresetList,
    PresetRequest,
    Probes,
    Problem,
    Ready,
    Report,
    Severity,
    Spec,
    Training,
    Verdict,
)
from gradscope_client.types import Response

URL = os.environ["GRADSCOPE_URL"]
TOKEN = os.environ["GRADSCOPE_TOKEN"]
TIMEOUT = httpx.Timeout(60.0)
# A preset that fits .ci/run's limits, trains in about a second and has a known diagnosis.
PRESET = "small-init"


def check(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


def answer(response: Response[Any], status: int, kind: type) -> Any:
    """The parsed body of `response`, which must have `status` and parse as `kind`."""
    check(
        response.status_code == status,
        f"expected {status}, got {response.status_code}: {response.content[:500]!r}",
    )
    check(isinstance(response.parsed, kind), f"expected a {kind.__name__}, got {type(response.parsed).__name__}")
    return response.parsed


def small_spec(name: str, steps: int = 60) -> Spec:
    """A 3-layer tanh MLP on XOR, every part a generated model (bare names as the *Name enums)."""
    return Spec(
        name=name,
        seed=3,
        model=Model(
            input_dim=2,
            layers=[
                Mlp(
                    type_=MlpType.MLP,
                    depth=3,
                    width=16,
                    activation=ActivationName.TANH,
                    init=InitXavierUniform(type_=InitXavierUniformType.XAVIER_UNIFORM, gain=1.0),
                    norm=None,
                ),
                Dense(type_=DenseType.DENSE, units=2, init=InitName.XAVIER_NORMAL),
            ],
        ),
        data=DataXor(type_=DataXorType.XOR, samples=256, noise=0.1, validation_split=0.25),
        training=Training(
            steps=steps,
            batch_size=32,
            loss=Loss.CROSS_ENTROPY,
            optimizer=OptimizerAdam(type_=OptimizerAdamType.ADAM, lr=0.01),
            clip=ClipGlobalNorm(type_=ClipGlobalNormType.GLOBAL_NORM, max_=5.0),
        ),
        probes=Probes(every=10),
    )


def long_spec() -> Spec:
    """About 2e9 parameter-sample updates (.ci/run's limit): seconds of training, time to cancel."""
    return Spec(
        name="lifecycle: long, to cancel",
        model=Model(
            input_dim=8,
            layers=[
                Mlp(
                    type_=MlpType.MLP,
                    depth=8,
                    width=48,
                    activation=ActivationLeakyRelu(type_=ActivationLeakyReluType.LEAKY_RELU, slope=0.1),
                    norm=NormName.LAYER,
                ),
                Dense(type_=DenseType.DENSE, units=3),
            ],
        ),
        data=DataBlobs(type_=DataBlobsType.BLOBS, samples=2048, dims=8, classes=3),
        training=Training(steps=2000, batch_size=48, optimizer=OptimizerName.SGD, clip=None),
    )


def events(text: str) -> list[dict[str, str]]:
    """The Server-Sent Events of a stream's text: the `id`, `event` and `data` fields of each, as
    the document's event schemas (`JobEvent`, `ExperimentEvent`) describe them."""
    out: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.split("\n"):
        if line == "":
            if current:
                out.append(current)
                current = {}
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        current[field] = current[field] + "\n" + value if field == "data" and field in current else value
    return out


def wait_for(client: AuthenticatedClient, job_id: str, done: Callable[[JobResource], bool], what: str) -> JobResource:
    deadline = time.monotonic() + 120
    while True:
        job = answer(get_job.sync_detailed(job_id, client=client), 200, JobResource)
        if done(job):
            return job
        check(time.monotonic() < deadline, f"job {job_id} never got {what}; last status {job.status}")
        time.sleep(0.02)


ENDED = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}


class Lifecycle:
    def __init__(self) -> None:
        self.client = AuthenticatedClient(base_url=URL, token=TOKEN, timeout=TIMEOUT)
        self.anonymous = Client(base_url=URL, timeout=TIMEOUT)
        self.spec_job = ""
        self.preset_job = ""

    def operations_need_no_token_and_v1_does(self) -> None:
        ready = answer(readyz.sync_detailed(client=self.anonymous), 200, Ready)
        check(ready.status == "ready" and ready.workers_alive == ready.workers >= 1, f"not ready: {ready}")
        text = answer(metrics.sync_detailed(client=self.anonymous), 200, str)
        # Without an Accept that asks for OpenMetrics, the Prometheus text format 0.0.4.
        check("# TYPE gradscope_" in text and "# EOF" not in text, "metrics are not Prometheus text")
        # /v1 without a token: the documented 401, parsed as a Problem.
        anonymous_v1 = AuthenticatedClient(base_url=URL, token="not-a-token", timeout=TIMEOUT)
        problem = answer(list_jobs.sync_detailed(client=anonymous_v1), 401, Problem)
        check(problem.type_ == "/problems/unauthorized", f"401 of type {problem.type_}")

    def submit_a_spec_built_from_models(self) -> None:
        response = create_job.sync_detailed(client=self.client, body=small_spec("lifecycle: spec"))
        job = answer(response, 202, JobResource)
        check(job.status in {JobStatus.QUEUED, JobStatus.RUNNING}, f"new job is {job.status}")
        check(response.headers["location"] == f"/v1/jobs/{job.id}", f"Location {response.headers['location']}")
        check(job.links.report == f"/v1/jobs/{job.id}/report", f"links {job.links}")
        self.spec_job = job.id

    def submit_a_preset(self) -> None:
        presets = answer(list_presets.sync_detailed(client=self.client), 200, PresetList)
        check(PRESET in [p.name for p in presets.presets], f"no preset {PRESET}")
        # The catalogue's spec comes back as the same typed model a request is built from.
        spec = answer(get_preset.sync_detailed(PRESET, client=self.client), 200, Spec)
        check(isinstance(spec.model.layers[0], (Mlp, Dense)), f"first layer {type(spec.model.layers[0])}")
        job = answer(create_job.sync_detailed(client=self.client, body=PresetRequest(preset=PRESET)), 202, JobResource)
        check(job.name == spec.name, f"preset job named {job.name!r}, the preset {spec.name!r}")
        self.preset_job = job.id

    def poll_until_done(self) -> None:
        for job_id, steps in [(self.spec_job, 60), (self.preset_job, None)]:
            job = wait_for(self.client, job_id, lambda j: j.status in ENDED, "to an end")
            check(job.status == JobStatus.SUCCEEDED, f"job {job_id} ended {job.status}: {job.error}")
            check(job.progress.step == job.progress.total_steps, f"progress {job.progress}")
            check(steps is None or job.progress.total_steps == steps, f"{job.progress.total_steps} steps")

    def read_the_typed_report(self) -> None:
        report = answer(get_job_report.sync_detailed(self.spec_job, client=self.client), 200, Report)
        check(report.report_version == 1, f"report_version {report.report_version}")
        check(report.summary.steps == 60 and report.summary.total_steps == 60, f"summary {report.summary}")
        check(isinstance(report.summary.verdict, Verdict), "verdict is not a Verdict")
        check(len(report.loss) == len(report.steps) > 0 and len(report.layers) >= 4, "series or layers missing")
        # The report echoes the spec as run, expanded: the mlp became dense layers.
        check(isinstance(report.spec, Spec), f"report.spec is {type(report.spec).__name__}")
        check(all(isinstance(layer, Dense) for layer in report.spec.model.layers), "echoed spec not expanded")
        # The preset's known diagnosis, read through the typed enums.
        report = answer(get_job_report.sync_detailed(self.preset_job, client=self.client), 200, Report)
        check(report.summary.verdict == Verdict.VANISHING, f"{PRESET} verdict {report.summary.verdict}")
        codes = {(d.code, d.severity) for d in report.diagnostics}
        check((DiagnosticCode.VANISHING_GRADIENT, Severity.CRITICAL) in codes, f"{PRESET} diagnostics {codes}")
        check(all(d.message and d.layers is not None for d in report.diagnostics), "a diagnostic without text")
        svg = answer(get_job_plot.sync_detailed(self.preset_job, PlotName.GRAD_NORMS, client=self.client), 200, str)
        check("<svg" in svg[:300], "the plot is not SVG")
        page = answer(get_job_report_html.sync_detailed(self.preset_job, client=self.client), 200, str)
        check("<html" in page[:300] and "vanishing_gradient" in page, "the page is not the report")

    def read_the_event_stream(self) -> None:
        text = answer(stream_job_events.sync_detailed(self.spec_job, client=self.client), 200, str)
        frames = events(text)
        # Each event is a JobEvent: told apart by `event`, its `data` the JSON of a named schema.
        progress = [JobProgressEvent.from_dict(f) for f in frames if f["event"] == JobProgressEventEvent.PROGRESS]
        final = [JobStatusEvent.from_dict(f) for f in frames if f["event"] == JobStatusEventEvent.STATUS]
        check(len(progress) + len(final) == len(frames) and len(final) == 1, f"events {[f['event'] for f in frames]}")
        check(frames[-1]["event"] == "status", "the stream does not end with its status")
        check([int(f["id"]) for f in frames] == list(range(1, len(frames) + 1)), "ids are not 1, 2, ...")
        steps = [JobProgress.from_dict(json.loads(p.data)).step for p in progress]
        check(steps == sorted(steps) and steps[-1] == 60, f"progress steps {steps}")
        job = JobResource.from_dict(json.loads(final[0].data))
        check(job.id == self.spec_job and job.status == JobStatus.SUCCEEDED, f"final status {job.status}")
        # Resuming after the last event: nothing more will come.
        again = stream_job_events.sync_detailed(self.spec_job, client=self.client, last_event_id=frames[-1]["id"])
        check(again.status_code == 204, f"resume after the end: {again.status_code}")

    def list_jobs_a_page_at_a_time(self) -> None:
        first = answer(list_jobs.sync_detailed(client=self.client, limit=1), 200, JobList)
        check(len(first.jobs) == 1 and isinstance(first.next_cursor, str), f"first page {first}")
        second = answer(list_jobs.sync_detailed(client=self.client, limit=1, cursor=first.next_cursor), 200, JobList)
        check(len(second.jobs) == 1, f"second page {second}")
        ids = [first.jobs[0].id, second.jobs[0].id]
        check(ids == [self.preset_job, self.spec_job], f"newest first: {ids}")
        succeeded = answer(list_jobs.sync_detailed(client=self.client, status=JobStatus.SUCCEEDED), 200, JobList)
        check({self.spec_job, self.preset_job} <= {j.id for j in succeeded.jobs}, "status filter")

    def cancel_a_running_job(self) -> None:
        job = answer(create_job.sync_detailed(client=self.client, body=long_spec()), 202, JobResource)
        wait_for(self.client, job.id, lambda j: j.status == JobStatus.RUNNING, "running")
        cancelled = answer(cancel_job.sync_detailed(job.id, client=self.client), 202, JobResource)
        check(cancelled.cancel_requested or cancelled.status == JobStatus.CANCELLED, f"cancel: {cancelled}")
        ended = wait_for(self.client, job.id, lambda j: j.status in ENDED, "to an end")
        check(ended.status == JobStatus.CANCELLED, f"cancelled job ended {ended.status}")
        check(ended.progress.step < ended.progress.total_steps == 2000, f"progress {ended.progress}")
        final = JobStatusEvent.from_dict(events(answer(stream_job_events.sync_detailed(job.id, client=self.client), 200, str))[-1])
        check(JobResource.from_dict(json.loads(final.data)).status == JobStatus.CANCELLED, f"last event {final}")
        # Cancelling a finished job changes nothing: 200.
        again = answer(cancel_job.sync_detailed(job.id, client=self.client), 200, JobResource)
        check(again.status == JobStatus.CANCELLED, f"second cancel: {again.status}")

    def delete_a_job(self) -> None:
        gone = delete_job.sync_detailed(self.spec_job, client=self.client)
        check(gone.status_code == 204, f"delete: {gone.status_code}")
        problem = answer(get_job.sync_detailed(self.spec_job, client=self.client), 404, Problem)
        check(problem.type_ == "/problems/job-not-found", f"404 of type {problem.type_}")

    def analyze_a_spec(self) -> None:
        spec = small_spec("lifecycle: analyze")
        spec.data = DataBlobs(type_=DataBlobsType.BLOBS, samples=64, dims=2, classes=2)
        report = answer(analyze.sync_detailed(client=self.client, body=spec), 200, Report)
        check(report.steps == [0] and report.summary.steps == 0, f"analysis steps {report.steps}")
        check(report.summary.params > 0 and len(report.layers) >= 4, f"summary {report.summary}")
        check(isinstance(report.spec, Spec) and report.spec.name == "lifecycle: analyze", "echoed spec")

    def run_an_experiment(self) -> None:
        relu = NamedPatch(
            name="relu",
            patch=[NamedPatchPatchItem.from_dict({"op": "replace", "path": "/model/layers/0/activation", "value": "relu"})],
        )
        request = ExperimentRequest(
            name="lifecycle: tanh vs relu",
            base=small_spec("lifecycle: experiment", steps=40),
            variants=[relu],
            seeds=[1, 2],
        )
        created = create_experiment.sync_detailed(client=self.client, body=request)
        experiment = answer(created, 202, ExperimentResource)
        check(created.headers["location"] == f"/v1/experiments/{experiment.id}", "Location")
        check([v.name for v in experiment.variants][1:] == ["relu"] and experiment.seeds == [1, 2], "variants")
        deadline = time.monotonic() + 180
        while experiment.status not in ENDED:
            check(time.monotonic() < deadline, f"experiment still {experiment.status}")
            time.sleep(0.1)
            experiment = answer(get_experiment.sync_detailed(experiment.id, client=self.client), 200, ExperimentResource)
        check(experiment.status == JobStatus.SUCCEEDED, f"experiment ended {experiment.status}")
        result = experiment.result
        check(result is not None and result.complete, "no complete result")
        check(sorted(result.ranking) == sorted(v.name for v in experiment.variants), f"ranking {result.ranking}")
        rows = {row.name: row for row in result.variants}
        check(rows["relu"].n == 2 and not rows["relu"].baseline and sum(r.baseline for r in rows.values()) == 1, "rows")
        check(all(row.final_loss.mean is not None for row in rows.values()), "a variant without a final loss")
        svg = answer(get_experiment_plot.sync_detailed(experiment.id, ExperimentPlot.LOSS, client=self.client), 200, str)
        check("<svg" in svg[:300], "the experiment plot is not SVG")
        frames = events(answer(stream_experiment_events.sync_detailed(experiment.id, client=self.client), 200, str))
        check(frames[-1]["event"] == ExperimentStatusEventEvent.STATUS, f"experiment events {frames}")
        final = ExperimentResource.from_dict(json.loads(ExperimentStatusEvent.from_dict(frames[-1]).data))
        check(final.id == experiment.id and final.result.ranking == result.ranking, "final event")


def main() -> int:
    lifecycle = Lifecycle()
    steps = [
        lifecycle.operations_need_no_token_and_v1_does,
        lifecycle.submit_a_spec_built_from_models,
        lifecycle.submit_a_preset,
        lifecycle.poll_until_done,
        lifecycle.read_the_typed_report,
        lifecycle.read_the_event_stream,
        lifecycle.list_jobs_a_page_at_a_time,
        lifecycle.cancel_a_running_job,
        lifecycle.delete_a_job,
        lifecycle.analyze_a_spec,
        lifecycle.run_an_experiment,
    ]
    passed = failed = 0
    for step in steps:
        started = time.monotonic()
        try:
            step()
        except Exception:  # noqa: BLE001 - report every step, then fail
            failed += 1
            print(f"FAIL {step.__name__}", flush=True)
            traceback.print_exc()
            # Later steps build on earlier ones: stop at the first failure.
            break
        passed += 1
        print(f"ok   {step.__name__} ({time.monotonic() - started:.1f} s)", flush=True)
    print(f"lifecycle: {passed} passed, {failed} failed")
    return 0 if failed == 0 and passed == len(steps) else 1


if __name__ == "__main__":
    sys.exit(main())
