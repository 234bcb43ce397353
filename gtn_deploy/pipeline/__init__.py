"""The end-to-end pipeline: plan -> GTN teacher -> distil -> export -> bench -> report."""
