"""The build side: an upload's recipe (what to build), the job that runs it
(stages, heartbeats, cancel, publish) and the data set readers."""
