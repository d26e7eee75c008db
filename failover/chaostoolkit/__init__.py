"""A Chaos Toolkit extension: a drill as an experiment that ``chaos run`` executes.

``failover drill export --format chaostoolkit SCENARIO`` writes the
experiment (``experiment``). Its steady-state hypothesis is the objectives
(``probes``): the deployment whole (one primary, the others streaming from
it), then each figure the scenario is judged on within its limit. Its method
is the drill's fault (``actions.run_drill``): the workload runs across it,
the scenario injects the fault, the engine moves, the figures are measured,
the old site is rebuilt as a standby, and the drill is kept in the history
(trigger ``chaostoolkit``). Its rollback is the fail back
(``actions.fail_back``): the primary moves home. The experiment asks for
rollbacks whatever happens (``runtime.rollbacks.strategy: always``), so a run
that is aborted or interrupted still puts the primary back
(chaostoolkit#176, #195). ``chaos run`` calls every activity in one process:
``session`` keeps the drill between them.
"""
