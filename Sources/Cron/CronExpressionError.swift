/// Why a cron expression was rejected, naming the field and the offending text.
///
/// The description is meant for operators (CLI output, logs); it quotes only the expression text, which is
/// configuration, never a secret.
public struct CronExpressionError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The broad class of the failure, stable for programmatic checks.
    public enum Code: String, Sendable, Hashable {
        /// The expression is empty or only whitespace.
        case empty
        /// Not exactly five space-separated fields (and not a known macro).
        case wrongFieldCount
        /// An `@name` that is not one of the supported macros.
        case unknownMacro
        /// A value that is neither a number nor a known name for its field.
        case invalidValue
        /// A number or name outside the field's range.
        case outOfRange
        /// A range whose start is after its end, or that is malformed.
        case invalidRange
        /// A step that is missing, zero, or not a number.
        case invalidStep
        /// The day-of-month and month fields together name no real date (e.g. `30 2`), so it never fires.
        case neverFires
    }

    /// The five fields of a cron expression, in order.
    public enum Field: String, Sendable, Hashable, CaseIterable {
        case minute
        case hour
        case dayOfMonth = "day-of-month"
        case month
        case dayOfWeek = "day-of-week"
    }

    /// The failure class.
    public let code: Code
    /// The field at fault, when the failure belongs to one field.
    public let field: Field?
    /// The offending text: the part of the field, the macro, or the whole expression.
    public let value: String
    /// A human explanation, e.g. "out of range 0-59".
    public let reason: String

    /// Creates an error; used by the parser.
    public init(code: Code, field: Field?, value: String, reason: String) {
        self.code = code
        self.field = field
        self.value = value
        self.reason = reason
    }

    public var description: String {
        if let field {
            return "invalid cron expression: \(field.rawValue) field: '\(value)': \(reason)"
        }
        return "invalid cron expression '\(value)': \(reason)"
    }
}
