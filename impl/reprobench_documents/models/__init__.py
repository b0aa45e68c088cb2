"""models components; each module registers one component with impl.registry."""
