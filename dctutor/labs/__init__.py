"""Chapter labs: experiments and figures that exist to teach, one module per chapter topic.

They import the core package (``dctutor.*``) and are never imported by it:

* :mod:`~dctutor.labs.alignment` (chapters 1 and 6): how far a random network's clusters follow shape or colour,
  and runs that set initial alignment against accuracy;
* :mod:`~dctutor.labs.kmeans_steps` (chapter 2): k-means replayed step by step, preprocessing compared;
* :mod:`~dctutor.labs.imbalance` (chapter 3): skewed pseudo-labels and the classifiers they make;
* :mod:`~dctutor.labs.inspect` (chapter 4): filters, top images, the contrast shortcut of ``shapes``;
* :mod:`~dctutor.labs.replicates` (chapter 4): the same run over several seeds, probed against random twins;
* :mod:`~dctutor.labs.figures`: the figures the chapters and the results page share;
* :mod:`~dctutor.labs.tables`: the HTML tables they share (means with their intervals and verdicts);
* :mod:`~dctutor.labs.results`: the reference-results page, one table per benchmark.
"""
