"""Figures and the self-contained HTML report of a run."""

from kdlens.report.build import render_report, report_run, report_stage

__all__ = ["render_report", "report_run", "report_stage"]
