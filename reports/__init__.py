"""Stage 3: frame + tables -> seaborn figures, HTML and Markdown reports."""
