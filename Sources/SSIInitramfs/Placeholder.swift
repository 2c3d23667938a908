public enum SSIInitramfsPlaceholder {}
