"""Figures and the self-contained HTML report of a run."""

from kdlens.report.build import render_report, report_run

__all__ = ["render_report", "report_run"]
