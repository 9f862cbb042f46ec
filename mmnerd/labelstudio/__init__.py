"""The annotation loop with Label Studio (the real server, run from its own venv).

    server      up / down / status of our Label Studio process (credentials in a 0600 file)
    client      a small requests-based API client (POSTs are never retried)
    push        PushStage: posts -> tasks, idempotent by post id, deterministic overlap
    simulate    SIMULATED annotators writing noisy gold annotations (demo and tests only)
    pull        PullStage: annotations -> checked spans -> majority vote -> strict IOB2
    adjudicate  majority vote and the adjudication project
    agreement   pairwise entity F1 and token-level Cohen's kappa, markdown + heat maps

Nothing here imports label_studio_sdk at module level (``mmnerd --help`` stays fast).
"""
