"""dctutor: DeepCluster (Caron, Bojanowski, Joulin, Douze, ECCV 2018), piece by piece."""

__version__ = "0.1.0"
