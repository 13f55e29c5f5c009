"""The local runtime: ``template.yaml``'s wiring, run on one machine with the same handlers."""
