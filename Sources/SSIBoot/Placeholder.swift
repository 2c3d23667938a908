public enum SSIBootPlaceholder {}
