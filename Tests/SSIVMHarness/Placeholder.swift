public enum SSIVMHarnessPlaceholder {}
