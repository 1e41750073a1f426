"""The stages of ``kdlens run``, in the order they run: each is a module with one entry point,
``run(ctx)``, that reads and adds to the :class:`kdlens.run.RunContext`.

A new stage is one new module here plus its place in ``STAGES``. ``MAIN_ONLY`` stages run only in
the main process under torchrun (they train nothing); the others run in every process, so the
models they train use every process, and only the main process writes files.
"""

from kdlens.stages import (
    deploy,
    evaluate,
    omitted,
    readable,
    report,
    students,
    teacher,
    verdicts,
)

STAGES = (teacher, students, evaluate, readable, omitted, deploy, verdicts, report)

__all__ = ["STAGES"]
