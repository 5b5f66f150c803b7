"""The HTML reports: each a folder that opens from disk (index.html, report.json, thumbs/),
made by one renderer (`page`) with the stylesheet the app's pages share (base.css) — for a
clustering run (`clusters`), a classifier's evaluation (`classify`), near-duplicates
(`duplicates`), an audit (`audit`), an explained query (`explain`), a region query
(`regions`), what each layer sees (`layers`) and a learnt art space (`learn`)."""
