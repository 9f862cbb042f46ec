"""The annotation loop with Label Studio (the real server, run from its own venv).

    server      up / down / status of our Label Studio process (credentials in a 0600 file)
    client      a small API client over mmnerd.http (POSTs are never retried)
    push        PushStage: posts -> tasks, idempotent by post id, deterministic overlap
    simulate    SIMULATED annotators writing noisy gold annotations (demo and tests only)
    pull        PullStage: annotations -> checked spans -> majority vote -> strict IOB2
    adjudicate  majority vote and the adjudication project
    agreement   pairwise entity F1 and token-level Cohen's kappa, markdown + heat maps

mmnerd talks to the server's REST API itself; it does not depend on label-studio-sdk
(docs/architecture.md says why).
"""
